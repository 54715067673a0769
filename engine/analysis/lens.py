"""The logit lens: read a residual-stream vector through the unembedding, the tokens it pushes up and down."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..model import Model
from ..trace import Trace

# What `delta_lens` reads at a token, in order.
DELTA_LENS_ROWS = ("before", "delta", "before_plus_delta", "before_plus_all")


@dataclass(frozen=True)
class LensReading:
    """A vector read through the unembedding: the tokens it pushes up and down most."""

    up: tuple[tuple[str, float], ...]  # (readable token, logit), highest first
    down: tuple[tuple[str, float], ...]  # (readable token, logit), lowest first


def logit_lens(model: Model, vectors: torch.Tensor | np.ndarray, k: int = 8,
               final_norm: bool = True) -> list[LensReading]:
    """Decode vectors [m, d_model] into their top-k and bottom-k tokens, through the final norm and W_U; a
    model without an LM head decodes through its tied input embedding W_E (config.has_lm_head says which)."""
    vectors = torch.as_tensor(np.asarray(vectors, dtype=np.float32))  # [m, d_model]
    logits = model.unembed(vectors, final_norm=final_norm).float().cpu()  # [m, d_vocab]
    top, bottom = logits.topk(k, dim=-1), (-logits).topk(k, dim=-1)
    ids = torch.cat([top.indices, bottom.indices], dim=-1)  # [m, 2k]
    words = model.readable(ids.reshape(-1).tolist())
    out = []
    for i in range(len(vectors)):
        row = words[i * 2 * k: (i + 1) * 2 * k]
        up = tuple((row[j], float(top.values[i, j])) for j in range(k))
        down = tuple((row[k + j], -float(bottom.values[i, j])) for j in range(k))
        out.append(LensReading(up, down))
    return out


def delta_lens(model: Model, trace: Trace, layer: int, head: int, token: int, k: int = 8) -> dict[str, LensReading]:
    """Logit lens at a token of: the residual before the layer, one head's Δe alone, before + that Δe, and
    before + all heads (keys: DELTA_LENS_ROWS)."""
    before = trace["resid_pre", layer][token].float()  # [d_model]
    delta = trace["head_out", layer, head][token].float()  # [d_model]
    attn = trace["attn_out", layer][token].float()
    vectors = torch.stack([before, delta, before + delta, before + attn])  # [4, d_model]
    return dict(zip(DELTA_LENS_ROWS, logit_lens(model, vectors, k), strict=True))


def sense_lens(model: Model, vectors: np.ndarray, k: int = 3) -> list[list[list[str]]]:
    """Top-k tokens of each sentence's vector at each layer, vectors [S, n_layers + 1, d] -> [S][n_layers + 1][k]."""
    S, P, d = vectors.shape
    readings = logit_lens(model, np.asarray(vectors).reshape(S * P, d), k)
    return [[[tok for tok, _ in readings[s * P + p].up] for p in range(P)] for s in range(S)]

