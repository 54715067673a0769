"""Attention rollout (Abnar & Zuidema, 2020): how much each input token flows into each position, across layers.

Each layer mixes positions by Â = 0.5 · A + 0.5 · I (the residual connection as the identity half), rows
renormalised, with A the layer's attention: the pattern averaged over the heads that are on, or the
value-weighted attention of the whole layer with rows normalised to sum 1 (weighted=True). The rollout up to
layer l is R_l = Â_l · Â_{l−1} ··· Â_0: row i says how much of position i at layer l's output comes from
each input token. It is an approximation: it ignores the MLPs, the norms and how the values change the mix.

Only a running n × n product is held, and each Â is computed a block of query rows at a time: O(n²) memory,
O(n_layers · n³) time. Under a causal mask a chosen query only needs the positions up to it.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ..arrays import readonly
from ..errors import InputError
from ..trace import Trace
from .value_weighted import layer_rows, normalise_rows, value_gram


def mixing_rows(trace: Trace, layer: int, rows: slice, weighted: bool = False, gram: torch.Tensor | None = None
                ) -> torch.Tensor:
    """Â for query rows `rows`: [r, n] float64, 0.5 · A + 0.5 · I with rows renormalised."""
    if weighted:
        A = layer_rows(trace, layer, rows, normalise=True, gram=gram)  # [r, n]
    else:
        pattern = trace.pattern_rows(layer, rows)  # [n_heads, r, n]
        on = trace.head_mask_[layer].to(pattern.device, pattern.dtype)  # [n_heads]
        A = torch.einsum("h,hrn->rn", on / on.sum().clamp_min(1), pattern).double()  # [r, n]; 0 if all heads off
    eye = torch.zeros_like(A)
    eye[torch.arange(A.shape[0]), torch.arange(rows.start, rows.stop)] = 1.0
    return normalise_rows(0.5 * A + 0.5 * eye)


def rollout_steps(trace: Trace, weighted: bool = False, size: int | None = None) -> Iterator[torch.Tensor]:
    """R_l for l = 0 .. n_layers − 1: [m, m] float64 over the first m = size positions (default all; a causal
    run's first m positions never depend on later ones), a new tensor for each layer."""
    n = trace.n_tokens if size is None else size
    if n < trace.n_tokens and not trace.causal:
        raise InputError("rollout over some positions only needs a causal run.")
    rolled = torch.eye(n, dtype=torch.float64, device=trace.device)  # [n, n]
    for layer in range(trace.config.n_layers):
        gram = value_gram(trace, layer) if weighted else None  # [n_tokens, n_heads, n_heads]
        new = torch.empty_like(rolled)
        for rows in _blocks(trace, n):
            # causal: Â and R are lower triangular, so rows up to `rows.stop` are all this block needs
            keys = slice(0, rows.stop) if trace.causal else slice(0, n)
            mix = mixing_rows(trace, layer, rows, weighted, gram)[:, keys]  # [r, k]
            new[rows] = 0.0
            new[rows, keys] = mix @ rolled[keys, keys]
        rolled = new
        yield rolled


def rollout_from(trace: Trace, query: int, weighted: bool = False) -> np.ndarray:
    """[n_layers, n]: the rollout row of token `query` after each layer, over the input tokens."""
    n = trace.n_tokens
    if not isinstance(query, int) or not -n <= query < n:
        raise InputError(f"query {query!r} is not a token position 0..{n - 1}.")
    query %= n
    size = query + 1 if trace.causal else n
    out = np.zeros((trace.config.n_layers, n))
    for layer, rolled in enumerate(rollout_steps(trace, weighted, size)):
        out[layer, :size] = rolled[query].cpu().numpy()
    return readonly(out)


def rollout_matrices(trace: Trace, weighted: bool = False, max_tokens: int = 1024) -> np.ndarray:
    """[n_layers, n, n]: every layer's whole rollout matrix (query rows, input-token columns). For long texts
    use rollout_from: this one holds n_layers · n² numbers, so texts over max_tokens are refused."""
    if trace.n_tokens > max_tokens:
        raise InputError(f"all rollout matrices of {trace.n_tokens} tokens are too large; ask for one token's "
                         f"rollout instead (up to {max_tokens} tokens here).")
    return readonly(torch.stack([rolled.clone() for rolled in rollout_steps(trace, weighted)]))


def _blocks(trace: Trace, m: int) -> Iterator[slice]:
    """Blocks of query rows over the first m positions."""
    for rows in trace.row_blocks(n_heads=trace.config.n_heads):
        if rows.start < m:
            yield slice(rows.start, min(rows.stop, m))
