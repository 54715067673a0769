"""Attention sinks: how much attention the first token takes, by weight and by what it contributes.

Many heads park most of their α on the first token while its value vector adds little (Xiao et al., 2023;
Kobayashi et al., 2020). The raw share counts α; the value-weighted share counts ‖α_i0 u_0‖ over the row's
total Σ_j ‖α_ij u_j‖; the sink-aware pattern leaves the first key out so the rest of the row can be seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..arrays import readonly
from ..trace import Trace
from .value_weighted import normalise_rows, value_norms


@dataclass(frozen=True)
class FirstTokenShares:
    """Per head, the mean over query rows of the share on the first key."""

    raw: np.ndarray  # [n_layers, n_heads], share of α (head_stats' "first")
    weighted: np.ndarray  # [n_layers, n_heads], share of the value-weighted row; NaN for a switched-off head


def first_token_shares(trace: Trace) -> FirstTokenShares:
    """Raw and value-weighted share of every head's attention on the first token, a block of rows at a time."""
    cfg, n = trace.config, trace.n_tokens
    raw = np.zeros((cfg.n_layers, cfg.n_heads))
    weighted = np.zeros((cfg.n_layers, cfg.n_heads))
    for layer in range(cfg.n_layers):
        norms = value_norms(trace, layer)  # [n_heads, n]
        for rows in trace.row_blocks(n_heads=cfg.n_heads):
            pattern = trace.pattern_rows(layer, rows).double()  # [n_heads, r, n]
            raw[layer] += pattern[:, :, 0].sum(1).cpu().numpy()
            total = pattern @ norms[:, :, None]  # [n_heads, r, 1]: Σ_j α_ij ‖u_j‖
            first = pattern[:, :, :1] * norms[:, None, :1]  # [n_heads, r, 1]: α_i0 ‖u_0‖
            weighted[layer] += torch.where(total > 0, first / total.clamp_min(1e-300), 0).sum((1, 2)).cpu().numpy()
    weighted[~trace.head_mask_.numpy()] = np.nan
    return FirstTokenShares(raw=readonly(raw / n), weighted=readonly(weighted / n))


def without_first_rows(trace: Trace, layer: int, rows: slice, head: int | None = None) -> torch.Tensor:
    """The pattern of query rows `rows` with the first key left out: column 0 set to 0 and each row renormalised
    over the other keys. [n_heads, r, n] (or [r, n] for one head), float32; a row with no other key (query 0
    under a causal mask) is all 0."""
    pattern = trace.pattern_rows(layer, rows, head)  # [..., r, n]
    rest = torch.cat([torch.zeros_like(pattern[..., :1]), pattern[..., 1:]], dim=-1)
    return normalise_rows(rest)


def pattern_without_first(trace: Trace, layer: int, head: int | None = None,
                          rows: slice = slice(None)) -> np.ndarray:
    """without_first_rows as a read-only numpy array (all query rows by default)."""
    return readonly(without_first_rows(trace, layer, rows, head))
