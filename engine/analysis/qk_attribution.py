"""Query·key attribution: why a head's score for (query i, key j) is what it is, as a sum over the parts of the
residual stream on the query side and on the key side.

The residual stream entering `layer` at each position is a sum of parts (engine.analysis.frozen_norms:
"embed", "bias", "L.H" for every head of an earlier layer, "L.mlp"). The attention's input norm (pre-norm
models) is frozen at each position's scale, so every part goes alone through it, through W_Q (query side) or
W_K (key side, the head's shared key/value head) and through its position's rotation (rotary is linear per
position); the norm's bias and b_Q / b_K join the "bias" part. Then

    terms[a, b] = q_a · k_b / sqrt(d_head)      and      Σ_ab terms[a, b] = the run's score q_i · k_j / sqrt(d_head)

terms.sum(1) is each part's share on the query side, terms.sum(0) on the key side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..arrays import readonly
from ..errors import InputError
from ..model import Model
from ..trace import Trace
from ..transformer import layer_ropes, rotary
from . import frozen_norms as fn
from .attribution import check_position


@dataclass(frozen=True)
class QKAttribution:
    layer: int
    head: int
    query: int
    key: int
    parts: tuple[str, ...]  # "embed", "bias", "L.H", "L.mlp": the same list for both sides
    terms: np.ndarray  # [n_parts, n_parts]: query part (rows) × key part (columns)
    score: float  # the run's pre-softmax score q·k × scale (soft-capped where the model caps it)
    masked: bool  # True when the key is hidden from the query by the run's mask or window (its α is 0)
    uncapped: float  # q·k × scale before any soft-cap: what the terms sum to (== score without a cap)
    softcap: float  # the model's attention soft-cap (0: none, and score == uncapped)

    @property
    def query_side(self) -> np.ndarray:
        """[n_parts]: each query part's share of the score (summed over every key part)."""
        return self.terms.sum(1)

    @property
    def key_side(self) -> np.ndarray:
        """[n_parts]: each key part's share of the score (summed over every query part)."""
        return self.terms.sum(0)


def sides(trace: Trace, layer: int, head: int, query: int, key: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each part of the residual stream entering `layer`, as the head sees it: at `query` through W_Q (and b_Q on
    the bias part), at `key` through W_K of its key/value head (and b_K), each rotated for its position:
    ([n_parts, d_head], [n_parts, d_head]) float64."""
    cfg, block = trace.config, trace._weights.blocks[layer]
    parts = fn.residual_parts(trace, layer, (query, key))  # [n_parts, 2, d_model]
    if cfg.norm_placement == "pre" and block.ln1 is not None:  # OLMo 2 has no input norm: the stream itself
        x = trace.layers[layer]["resid_pre"][[query, key]]  # [2, d_model]
        parts = fn.apply(parts, block.ln1, fn.scale(x, cfg), cfg)
        if block.ln1.b is not None:
            parts[1] = parts[1] + block.ln1.b.double()
    attn, kv_head = block.attn, head // cfg.kv_group
    positions = torch.tensor([query, key], device=parts.device)
    rope = layer_ropes(cfg, positions)[layer]  # the layer's own base (Gemma 3), partial / interleaved rotary
    out = []
    for i, (W, b, w_norm, index) in enumerate(((attn.W_Q, attn.b_Q, attn.q_norm, head),
                                               (attn.W_K, attn.b_K, attn.k_norm, kv_head))):
        if cfg.qk_norm == "all":  # its statistic is over every head's projection: compute them all
            side = torch.einsum("pd,hde->phe", parts[:, i], W.double())  # [n_parts, h, d_head]
            if b is not None:
                side[1] = side[1] + b.double()
            side = fn.freeze_qk_norm(side[:, index], w_norm, side.sum(0), index, cfg)  # [n_parts, d_head]
        else:
            side = parts[:, i] @ W[index].double()  # [n_parts, d_head]
            if b is not None:
                side[1] = side[1] + b[index].double()
            if cfg.qk_norm:
                side = fn.freeze_qk_norm(side, w_norm, side.sum(0)[None], 0, cfg)
        if rope is not None:
            cos, sin = rope[0][i:i + 1].double(), rope[1][i:i + 1].double()
            side = rotary(side, cos, sin, cfg.rotary_interleaved)
        out.append(side)
    return out[0], out[1]


@torch.inference_mode()
def qk_attribution(model: Model, trace: Trace, layer: int, head: int, query: int, key: int) -> QKAttribution:
    """The score of head `head` of `layer` for (query, key), split into query part × key part (see the module)."""
    cfg = trace.config
    fn.check_linear(cfg, "Query·key attribution")
    if not (isinstance(layer, int) and 0 <= layer < cfg.n_layers):
        raise InputError(f"layer {layer} is outside 0..{cfg.n_layers - 1}.")
    if not (isinstance(head, int) and 0 <= head < cfg.n_heads):
        raise InputError(f"head {head} is outside 0..{cfg.n_heads - 1}.")
    query, key = check_position(trace, query), check_position(trace, key)
    q, k = sides(trace, layer, head, query, key)
    terms = q @ k.T * cfg.scale()  # [n_parts, n_parts]
    score = float(trace.scores_rows(layer, slice(query, query + 1), head)[0, key])
    stored = trace.layers[layer]
    q_run, k_run = stored["q"][head, query].double(), stored["k_kv"][head // cfg.kv_group, key].double()
    return QKAttribution(layer=layer, head=head, query=query, key=key,
                         parts=tuple(fn.part_names(cfg, layer)), terms=readonly(terms), score=score,
                         masked=bool(trace.masked(slice(query, query + 1), layer)[0, key]),
                         uncapped=float(q_run @ k_run) * cfg.scale(), softcap=cfg.attn_softcap)
