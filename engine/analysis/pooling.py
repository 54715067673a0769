"""One head's n × n matrix (pattern or pre-softmax scores) reduced for drawing, a block of rows at a time.

For a long text the view draws an image of at most `size` pixels a side: each pixel is the largest value of
its block of cells, so one strong key (a sharp diagonal, a sink column) stays visible. Computed from the
trace's q and k a block of query rows at a time, it never holds the whole n × n matrix (268 MB for one head
at 8,192 tokens).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from ..arrays import readonly
from ..trace import Trace

Matrix = Literal["pattern", "scores"]


def pool_edges(n: int, size: int) -> np.ndarray:
    """Block edges splitting range(n) into min(n, size) nearly equal blocks: [n_blocks + 1]."""
    return np.linspace(0, n, min(n, size) + 1).round().astype(np.int64)


def _rows(trace: Trace, name: Matrix, layer: int, head: int, rows: slice) -> torch.Tensor:
    """[r, n] rows of the pattern, or of the scores with masked cells at −inf (they draw as 'masked')."""
    if name == "pattern":
        return trace.pattern_rows(layer, rows, head)
    scores = trace.scores_rows(layer, rows, head)
    if trace.causal:
        start = rows.start or 0
        future = torch.ones(scores.shape, dtype=torch.bool, device=scores.device).triu(1 + start)
        scores = scores.masked_fill(future, float("-inf"))
    return scores


@dataclass(frozen=True)
class Pooled:
    """One matrix max-pooled at several sizes, and the extremes of its unmasked cells."""

    n: int
    maps: tuple[np.ndarray, ...]  # [t, t] per size asked for, t = min(n, size); −inf where a block is masked
    low: float
    high: float


def max_pooled(trace: Trace, name: Matrix, layer: int, head: int, sizes: tuple[int, ...]) -> Pooled:
    """The largest value in each block of query rows × key columns, for each size, in one pass over the rows
    (masked scores count as −inf, so a wholly masked block stays −inf)."""
    n = trace.n_tokens
    edges = [pool_edges(n, size) for size in sizes]
    maps = [np.full((len(e) - 1, len(e) - 1), -np.inf, dtype=np.float32) for e in edges]
    low, high = np.inf, -np.inf
    for rows in trace.row_blocks():
        block = _rows(trace, name, layer, head, rows).float().cpu().numpy()  # [r, n]
        finite = block[np.isfinite(block)]
        if finite.size:
            low, high = min(low, float(finite.min())), max(high, float(finite.max()))
        for out, e in zip(maps, edges, strict=True):
            columns = np.maximum.reduceat(block, e[:-1], axis=-1)  # [r, t]
            cell = np.searchsorted(e, np.arange(rows.start, rows.stop), side="right") - 1  # [r]
            first = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])
            out[cell[first]] = np.maximum(out[cell[first]], np.maximum.reduceat(columns, first, axis=0))
    return Pooled(n, tuple(readonly(m) for m in maps), low, high)


def window(trace: Trace, name: Matrix, layer: int, head: int, start: int, stop: int) -> np.ndarray:
    """[w, w]: the exact cells of query rows and key columns start..stop-1 (scores before masking)."""
    rows = slice(start, stop)
    block = trace.pattern_rows(layer, rows, head) if name == "pattern" else trace.scores_rows(layer, rows, head)
    return readonly(block[:, start:stop])
