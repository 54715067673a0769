"""Per-head summaries of the attention patterns, computed a block of query rows at a time.

At 8,192 tokens one layer's patterns are 9 × 8,192² floats (2.4 GB); nothing here holds more than one block
of rows of one layer at once, and one pass over the patterns gives every number the all-heads views show.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..arrays import readonly
from ..trace import Trace
from .pooling import pool_edges

STATS = ("entropy", "first", "previous", "self")


@dataclass(frozen=True)
class HeadOverview:
    """What the all-heads views show, for every head: a max-pooled thumbnail of its pattern and summary stats."""

    thumbnails: np.ndarray  # [n_layers, n_heads, t, t], t = min(n, thumb_px): max over blocks of the pattern
    entropy: np.ndarray  # [n_layers, n_heads], mean over query rows of the row's entropy in bits
    first: np.ndarray  # mean share of attention on the first token
    previous: np.ndarray  # mean share on the previous token (rows 1..n-1; 0 for a one-token text)
    self: np.ndarray  # mean share on the query token itself

    def stats(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in STATS}


def head_overview(trace: Trace, thumb_px: int = 48) -> HeadOverview:
    """One pass over every layer's pattern, one block of query rows at a time (~32 MB of pattern each)."""
    cfg, n = trace.config, trace.n_tokens
    edges = pool_edges(n, thumb_px)
    t = len(edges) - 1
    thumbs = np.zeros((cfg.n_layers, cfg.n_heads, t, t), dtype=np.float32)
    sums = {name: np.zeros((cfg.n_layers, cfg.n_heads)) for name in STATS}
    for layer in range(cfg.n_layers):
        for rows in trace.row_blocks(n_heads=cfg.n_heads):
            pattern = trace.pattern_rows(layer, rows).float()  # [n_heads, r, n]
            per_row = row_stats(pattern, torch.arange(rows.start, rows.stop, device=pattern.device))
            for name in STATS:
                sums[name][layer] += per_row[name].sum(-1).double().cpu().numpy()
            _pool_into(thumbs[layer], pattern.cpu().numpy(), edges, rows.start)
    counts = {"previous": max(n - 1, 1)}
    stats = {name: readonly(total / counts.get(name, n)) for name, total in sums.items()}
    return HeadOverview(thumbnails=readonly(thumbs), **stats)


def row_stats(pattern: torch.Tensor, position: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each query row's entropy (bits), weight on the first token, on the previous token (0 for row 0), on itself,
    and mean attention distance Σ_j α_ij |i − j|: pattern [..., h, r, n] of the query positions `position` [r]
    -> [..., h, r] per name. A head's statistic is the mean over a text's rows (over rows 1.. for "previous")."""
    r, n = pattern.shape[-2:]
    local = torch.arange(r, device=pattern.device)
    plogp = torch.where(pattern > 0, pattern * torch.log2(pattern.clamp_min(1e-30)), 0.0)
    previous = pattern[..., local, (position - 1).clamp_min(0)] * (position >= 1)
    distance = (position[:, None] - torch.arange(n, device=pattern.device)[None, :]).abs().to(pattern.dtype)  # [r, n]
    return {"entropy": -plogp.sum(-1), "first": pattern[..., 0], "previous": previous,
            "self": pattern[..., local, position], "distance": (pattern * distance).sum(-1)}


def _pool_into(thumbs: np.ndarray, pattern: np.ndarray, edges: np.ndarray, start: int) -> None:
    """Max-pool a block of pattern rows [h, r, n] (rows start..start+r-1) into thumbnails [h, t, t]."""
    columns = np.maximum.reduceat(pattern, edges[:-1], axis=-1)  # [h, r, t]
    cell = np.searchsorted(edges, np.arange(start, start + pattern.shape[1]), side="right") - 1  # [r]
    first = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])  # where each thumbnail row begins in the block
    rows = np.maximum.reduceat(columns, first, axis=1)  # [h, cells, t]
    thumbs[:, cell[first]] = np.maximum(thumbs[:, cell[first]], rows)


def head_summary(trace: Trace) -> dict[str, np.ndarray]:
    """entropy, first, previous, self: each [n_layers, n_heads] (see HeadOverview)."""
    return head_overview(trace, thumb_px=1).stats()
