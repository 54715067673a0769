"""Per-head summary numbers of attention patterns: entropy and where the attention goes."""

from __future__ import annotations

import torch

from .trace import Trace


def head_summary(trace: Trace) -> dict[str, torch.Tensor]:
    """Per head, averaged over query rows: `entropy` (bits), share of attention on the `first` token,
    on the `previous` token (rows 1..n-1) and on the query token itself (`self`). Each [n_layers, n_heads]."""
    stats: dict[str, list[torch.Tensor]] = {"entropy": [], "first": [], "previous": [], "self": []}
    for layer in range(trace.config.n_layers):
        pattern = trace["pattern", layer]  # [n_heads, n, n], float32
        plogp = torch.where(pattern > 0, pattern * torch.log2(pattern.clamp_min(1e-30)), torch.zeros(()))
        stats["entropy"].append(-plogp.sum(-1).mean(-1))
        stats["first"].append(pattern[:, :, 0].mean(-1))
        diag = pattern.diagonal(dim1=-2, dim2=-1)  # [n_heads, n]
        stats["self"].append(diag.mean(-1))
        if pattern.shape[-1] > 1:
            stats["previous"].append(pattern.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1))
        else:
            stats["previous"].append(torch.zeros(pattern.shape[0]))
    return {name: torch.stack(values).cpu() for name, values in stats.items()}
