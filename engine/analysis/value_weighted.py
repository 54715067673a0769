"""Value-weighted attention (Kobayashi et al., 2020): how much each key actually contributes, not just α.

Head h adds α^h_ij · u^h_j to query i for each key j, with u^h_j = v^h_j W_O[h] (the key's value vector
through the head's output map; b_V included in v, b_O belongs to no key). A key can take most of α and add
almost nothing when ‖u^h_j‖ is small: the first token of many models does exactly that.

- per head: ‖α^h_ij u^h_j‖ = α^h_ij ‖u^h_j‖ (α is a scalar);
- per layer: ‖Σ_h α^h_ij u^h_j‖, from the Gram matrices G_j[h, h'] = u^h_j · u^h'_j as
  sqrt(Σ_{h,h'} α^h_ij α^h'_ij G_j[h, h']): O(n · n_heads²) numbers instead of n² · d_model.

Switched-off heads contribute nothing (u = 0). At a patched query position the head's z is not α @ v, so
those rows show the unpatched decomposition. Functions named `*_rows` return torch tensors for other
analyses; the others return read-only numpy arrays.
"""

from __future__ import annotations

import numpy as np
import torch

from ..arrays import readonly
from ..trace import Trace


def _as_rows(rows: int | slice | None, n: int) -> slice:
    if rows is None:
        return slice(0, n)
    if isinstance(rows, int):
        row = rows % n
        return slice(row, row + 1)
    start, stop, _ = rows.indices(n)
    return slice(start, stop)


def contributions(trace: Trace, layer: int, keys: slice = slice(None)) -> torch.Tensor:
    """u^h_j = v^h_j W_O[h] for the keys j in `keys`: [n_heads, c, d_model] (zero for a switched-off head)."""
    v = trace["v", layer][:, keys]  # [n_heads, c, d_head]
    W_O = trace._weights.blocks[layer].attn.W_O  # [n_heads, d_head, d_model]
    on = trace.head_mask_[layer].to(v.device, v.dtype)  # [n_heads]
    return torch.einsum("hce,hed->hcd", v, W_O) * on[:, None, None]


def value_gram(trace: Trace, layer: int, block: int = 512) -> torch.Tensor:
    """G [n, n_heads, n_heads] float64: G_j[h, h'] = u^h_j · u^h'_j, computed a block of keys at a time."""
    n, H = trace.n_tokens, trace.config.n_heads
    gram = torch.empty(n, H, H, dtype=torch.float64, device=trace.device)
    for start in range(0, n, block):
        keys = slice(start, min(start + block, n))
        u = contributions(trace, layer, keys).double()  # [n_heads, c, d_model]
        gram[keys] = torch.einsum("hcd,kcd->chk", u, u)
    return gram


def value_norms(trace: Trace, layer: int) -> torch.Tensor:
    """‖u^h_j‖: [n_heads, n] float64, the size of what each key's value adds through each head."""
    return contributions(trace, layer).double().norm(dim=-1)


def normalise_rows(x: torch.Tensor) -> torch.Tensor:
    """Each row divided by its sum (a row that sums to 0 stays 0)."""
    total = x.sum(-1, keepdim=True)
    return torch.where(total > 0, x / torch.where(total > 0, total, 1), 0)


def head_rows(trace: Trace, layer: int, head: int, rows: slice, normalise: bool = False,
              norms: torch.Tensor | None = None) -> torch.Tensor:
    """α^h_ij ‖u^h_j‖ for query rows `rows`: [r, n] float64. norms: value_norms(trace, layer), if at hand."""
    norms = value_norms(trace, layer) if norms is None else norms  # [n_heads, n]
    out = trace.pattern_rows(layer, rows, head).double() * norms[head]  # [r, n]
    return normalise_rows(out) if normalise else out


def layer_rows(trace: Trace, layer: int, rows: slice, normalise: bool = False,
               gram: torch.Tensor | None = None) -> torch.Tensor:
    """‖Σ_h α^h_ij u^h_j‖ for query rows `rows`: [r, n] float64. gram: value_gram(trace, layer), if at hand."""
    gram = value_gram(trace, layer) if gram is None else gram  # [n, n_heads, n_heads]
    alpha = trace.pattern_rows(layer, rows).double().permute(2, 1, 0).contiguous()  # [n, r, n_heads], key first
    mixed = torch.bmm(alpha, gram)  # [n, r, n_heads]: Σ_h α^h_ij G_j[h, k] for each key j
    out = (mixed * alpha).sum(-1).clamp_min(0).sqrt().T  # [r, n]
    return normalise_rows(out) if normalise else out


def head_weighted(trace: Trace, layer: int, head: int, rows: int | slice | None = None,
                  normalise: bool = False) -> np.ndarray:
    """One head's value-weighted attention ‖α_ij u_j‖: [r, n] for a block of query rows (default all, [n, n]);
    normalise: each row divided by its sum."""
    return readonly(head_rows(trace, layer, head, _as_rows(rows, trace.n_tokens), normalise))


def layer_weighted(trace: Trace, layer: int, rows: int | slice | None = None, normalise: bool = False) -> np.ndarray:
    """A whole layer's value-weighted attention ‖Σ_h α^h_ij u^h_j‖: [r, n] (default all rows, [n, n])."""
    return readonly(layer_rows(trace, layer, _as_rows(rows, trace.n_tokens), normalise))
