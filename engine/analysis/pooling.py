"""One head's n × n matrix (pattern or pre-softmax scores) reduced for drawing, a block of rows at a time.

For a long text the view draws an image of at most `size` pixels a side: each pixel is the largest value of
its block of cells, so one strong key (a sharp diagonal, a sink column) stays visible. Computed from the
trace's q and k a block of query rows at a time, it never holds the whole n × n matrix (268 MB for one head
at 8,192 tokens).
"""

from __future__ import annotations

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


def max_pooled(trace: Trace, name: Matrix, layer: int, head: int, size: int) -> np.ndarray:
    """[t, t] with t = min(n, size): the largest value in each block of query rows × key columns (−inf for a
    scores block that is wholly masked)."""
    n = trace.n_tokens
    edges = pool_edges(n, size)
    out = np.full((len(edges) - 1, len(edges) - 1), -np.inf, dtype=np.float32)
    for rows in trace.row_blocks():
        block = _rows(trace, name, layer, head, rows).float().cpu().numpy()  # [r, n]
        columns = np.maximum.reduceat(block, edges[:-1], axis=-1)  # [r, t]
        cell = np.searchsorted(edges, np.arange(rows.start, rows.stop), side="right") - 1  # [r]
        first = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])
        out[cell[first]] = np.maximum(out[cell[first]], np.maximum.reduceat(columns, first, axis=0))
    return readonly(out)


def window(trace: Trace, name: Matrix, layer: int, head: int, start: int, stop: int) -> np.ndarray:
    """[w, w]: the exact cells of query rows and key columns start..stop-1 (masked scores at −inf)."""
    block = _rows(trace, name, layer, head, slice(start, stop))[:, start:stop]
    return readonly(block)
