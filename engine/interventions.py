"""Checking a run's interventions, and finding how much of an earlier run can be reused.

A patch is given as {(layer, head): {position: z}} with z a [d_head] vector: that head's z (its pattern @ v,
before W_O) is replaced at that query position. `check_patch` validates it and turns it into the forward
pass's form {layer: {head: {position: z}}}; `reusable_layers` says how many leading layers of an earlier
trace are exactly what a new run would compute.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from .config import ModelConfig
from .errors import InputError
from .trace import Prefix, Trace
from .transformer import Patch
from .weights import Weights

PatchArg = Mapping[tuple[int, int], Mapping[int, "torch.Tensor | np.ndarray | Sequence[float]"]]


def check_patch(patch: PatchArg | None, cfg: ModelConfig, n_tokens: int, device: torch.device,
                dtype: torch.dtype) -> dict[int, dict[int, dict[int, torch.Tensor]]]:
    """Validate a patch; every problem is an InputError that names the entry at fault."""
    out: dict[int, dict[int, dict[int, torch.Tensor]]] = {}
    if patch is None:
        return out
    if not isinstance(patch, Mapping):
        raise InputError(f"patch must map (layer, head) to {{position: z}}, not {type(patch).__name__}.")
    for key, positions in patch.items():
        if not (isinstance(key, tuple) and len(key) == 2 and all(_is_int(x) for x in key)):
            raise InputError(f"patch key {key!r} must be a (layer, head) pair of whole numbers.")
        layer, head = int(key[0]), int(key[1])
        if not 0 <= layer < cfg.n_layers:
            raise InputError(f"patch layer {layer} is out of range 0..{cfg.n_layers - 1}.")
        if not 0 <= head < cfg.n_heads:
            raise InputError(f"patch head {head} (layer {layer}) is out of range 0..{cfg.n_heads - 1}.")
        if not isinstance(positions, Mapping):
            raise InputError(f"patch ({layer}, {head}) must map positions to vectors, not {type(positions).__name__}.")
        for position, z in positions.items():
            if not _is_int(position) or not -n_tokens <= int(position) < n_tokens:
                raise InputError(f"patch ({layer}, {head}) position {position!r} is not a token position "
                                 f"0..{n_tokens - 1}.")
            vector = _vector(z, layer, head, int(position), cfg.d_head)
            out.setdefault(layer, {}).setdefault(head, {})[int(position) % n_tokens] = vector.to(device, dtype)
    return out


def _is_int(x) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


def _vector(z, layer: int, head: int, position: int, d_head: int) -> torch.Tensor:
    where = f"patch ({layer}, {head}) at position {position}"
    try:
        vector = torch.as_tensor(np.asarray(z.detach().cpu() if isinstance(z, torch.Tensor) else z, dtype=np.float64))
    except (TypeError, ValueError) as err:
        raise InputError(f"{where}: z must be a vector of {d_head} numbers ({err}).") from None
    if tuple(vector.shape) != (d_head,):
        raise InputError(f"{where}: z must have shape ({d_head},) (d_head), not {tuple(vector.shape)}.")
    if not torch.isfinite(vector).all():
        raise InputError(f"{where}: z holds NaN or infinite values.")
    return vector


def _same_heads(a: Mapping | None, b: Mapping | None) -> bool:
    """Equal patches of one layer: the same heads, positions and vectors."""
    a, b = a or {}, b or {}
    if a.keys() != b.keys():
        return False
    for head in a:
        if a[head].keys() != b[head].keys():
            return False
        if not all(torch.equal(a[head][p].cpu(), b[head][p].cpu()) for p in a[head]):
            return False
    return True


def reusable_layers(base: Trace | Prefix | None, weights: Weights, token_ids: Sequence[int], causal: bool,
                    head_mask: torch.Tensor, patch: Patch, attention: str, lean: bool = False) -> int:
    """How many leading layers of `base` (a trace, or the prefix of a stopped run) a run with these settings
    would compute identically: 0 without a base of the same model, tokens, mask, attention path and storage
    (lean or not); else the
    first layer whose head switches or patch differ, at most the number of layers `base` has."""
    if (base is None or base._weights is not weights or base.causal != causal or base.attention != attention
            or base.lean != lean or list(base.token_ids) != list(token_ids)):
        return 0
    base_mask = base.head_mask_
    for layer in range(len(base.layers)):
        if not torch.equal(base_mask[layer], head_mask[layer]) or not _same_heads(base.patch.get(layer),
                                                                                 patch.get(layer)):
            return layer
    return len(base.layers)
