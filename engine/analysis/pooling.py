"""One head's n × n matrix reduced for drawing, a block of rows at a time.

The matrices (query rows × key columns):

    pattern         α, the softmax pattern
    scores          q·k/√d_head, masked cells −inf (`window` gives them before masking)
    head_weighted   α_ij ‖v_j W_O[h]‖, what key j adds to query i through the head (value_weighted.py)
    layer_weighted  ‖Σ_h α^h_ij v^h_j W_O[h]‖, the same through the whole layer (the head is ignored)
    without_first   α with the first key left out and each row renormalised (sinks.py)

The value-weighted ones can have each row divided by its sum (`normalise`).

For a long text the view draws an image of at most `size` pixels a side: each pixel is the largest value of
its block of cells, so one strong key (a sharp diagonal, a sink column) stays visible. Computed from the
trace's q, k and v a block of query rows at a time, it never holds the whole n × n matrix (268 MB for one head
at 8,192 tokens).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch

from ..arrays import readonly
from ..trace import Trace
from .sinks import without_first_rows
from .value_weighted import head_rows, layer_rows, value_gram, value_norms

Matrix = Literal["pattern", "scores", "head_weighted", "layer_weighted", "without_first"]
MATRICES: tuple[Matrix, ...] = get_args(Matrix)
LAYER_BLOCK_HEADS = 6  # a block of layer_weighted rows holds ~6 float64 copies of every head's rows


def pool_edges(n: int, size: int) -> np.ndarray:
    """Block edges splitting range(n) into min(n, size) nearly equal blocks: [n_blocks + 1]."""
    return np.linspace(0, n, min(n, size) + 1).round().astype(np.int64)


def row_reader(trace: Trace, name: Matrix, layer: int, head: int, normalise: bool = False
               ) -> Callable[[slice], torch.Tensor]:
    """A function of a slice of query rows giving those rows of the named matrix, [r, n]. What every block
    shares (the layer's value norms or Gram matrices) is computed here, once."""
    if name not in MATRICES:
        raise ValueError(f"matrix must be one of {MATRICES}, not {name!r}")
    if name == "pattern":
        return lambda rows: trace.pattern_rows(layer, rows, head)
    if name == "scores":
        return lambda rows: _masked_scores(trace, layer, head, rows)
    if name == "head_weighted":
        norms = value_norms(trace, layer)  # [n_heads, n]
        return lambda rows: head_rows(trace, layer, head, rows, normalise, norms)
    if name == "layer_weighted":
        gram = value_gram(trace, layer)  # [n, n_heads, n_heads]
        return lambda rows: layer_rows(trace, layer, rows, normalise, gram)
    return lambda rows: without_first_rows(trace, layer, rows, head)


def row_blocks(trace: Trace, name: Matrix) -> Iterator[slice]:
    """Blocks of query rows for reading the named matrix (smaller ones for the whole layer's)."""
    heads = LAYER_BLOCK_HEADS * trace.config.n_heads if name == "layer_weighted" else 1
    return trace.row_blocks(n_heads=heads)


def _masked_scores(trace: Trace, layer: int, head: int, rows: slice) -> torch.Tensor:
    """[r, n] rows of the scores with masked cells at −inf (they draw as 'masked')."""
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


def max_pooled(trace: Trace, name: Matrix, layer: int, head: int, sizes: tuple[int, ...],
               normalise: bool = False) -> Pooled:
    """The largest value in each block of query rows × key columns, for each size, in one pass over the rows
    (masked scores count as −inf, so a wholly masked block stays −inf)."""
    n = trace.n_tokens
    read = row_reader(trace, name, layer, head, normalise)
    edges = [pool_edges(n, size) for size in sizes]
    maps = [np.full((len(e) - 1, len(e) - 1), -np.inf, dtype=np.float32) for e in edges]
    low, high = np.inf, -np.inf
    for rows in row_blocks(trace, name):
        block = read(rows).float().cpu().numpy()  # [r, n]; −inf is the only value that is not finite
        high = max(high, float(block.max()))
        low = min(low, float(np.min(block, where=block > -np.inf, initial=np.inf)))
        for out, e in zip(maps, edges, strict=True):
            if len(e) - 1 == n:  # one pixel per token: nothing to pool
                out[rows] = block
                continue
            columns = np.maximum.reduceat(block, e[:-1], axis=-1)  # [r, t]
            cell = np.searchsorted(e, np.arange(rows.start, rows.stop), side="right") - 1  # [r]
            first = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])
            out[cell[first]] = np.maximum(out[cell[first]], np.maximum.reduceat(columns, first, axis=0))
    if high == -np.inf:  # every cell masked
        low = high = 0.0
    return Pooled(n, tuple(readonly(m) for m in maps), low, high)


def window(trace: Trace, name: Matrix, layer: int, head: int, start: int, stop: int,
           normalise: bool = False) -> np.ndarray:
    """[w, w]: the exact cells of query rows and key columns start..stop-1 (scores before masking; normalised
    rows are divided by the sum of the whole row, not of the window)."""
    rows = slice(start, stop)
    if name == "scores":
        return readonly(trace.scores_rows(layer, rows, head)[:, start:stop])
    return readonly(row_reader(trace, name, layer, head, normalise)(rows)[:, start:stop].float())
