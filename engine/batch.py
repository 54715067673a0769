"""Several patched variants of one run, computed together as a batch from the patched layer on.

A patching sweep runs the same tokens many times, each with some heads' z replaced in one layer. The layers
before it are the base run's; from it on, the variants differ. Here they run as one batch [B, m, d_model]
in one pass over the layers (a variant joins at its layer), so each weight matrix is read once for all of
them, and nothing is recorded: the result is the last block's output of each variant. Under a causal mask
a patch at position p changes nothing before p, so only the query positions asked for (e.g. just the
target) are computed, against the base run's stored keys and values of the earlier positions. The blocks
are transformer.block, the one forward pass, with a leading batch dimension.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .errors import InputError
from .interventions import check_patch
from .trace import Trace
from .transformer import HeadPatch, after, block, layer_ropes

# per variant: head -> query position -> z [d_head]
LayerPatch = HeadPatch


@torch.inference_mode()
def run_variants(base: Trace, variants: Sequence[tuple[int, LayerPatch]], positions: slice | None = None
                 ) -> torch.Tensor:
    """The last block's output [B, m, d_model] of B = len(variants) variants of `base`. Variant (layer, patch)
    has patch ({head: {position: z}}) applied in `layer` on top of base's own patch; every layer runs with
    base's mask, head switches, patches and attention path.

    One pass over the layers serves all variants: a variant joins the batch at its layer, from base's
    resid_pre there. positions: the query positions to compute, m of them (default all). Under a causal mask
    a shorter range start..stop is exact when no patch lies before `start`: earlier positions keep base's keys
    and values, and later ones cannot reach the range."""
    cfg, n = base.config, base.n_tokens
    device, dtype = base.device, base.resid_last.dtype
    start, stop, _ = (positions or slice(None)).indices(n)
    if start > 0 and not base.causal:
        raise InputError("computing only some positions needs a causal run.")
    checked = []  # validated, positions made non-negative
    for layer, patch in variants:
        if not isinstance(layer, int) or not 0 <= layer < cfg.n_layers:
            raise InputError(f"layer {layer!r} is out of range 0..{cfg.n_layers - 1}.")
        at = check_patch({(layer, head): z for head, z in patch.items()}, cfg, n, device, dtype)
        if any(p < start for positions_z in at.get(layer, {}).values() for p in positions_z):
            raise InputError(f"a patch in layer {layer} lies before position {start}, the first one computed.")
        checked.append(at.get(layer, {}))
    if not variants:
        return torch.empty(0, stop - start, cfg.d_model, device=device, dtype=dtype)
    ropes = layer_ropes(cfg, torch.arange(start, stop, device=device))
    heads_on = base.head_mask_.to(device=device, dtype=dtype)  # [n_layers, n_heads]
    active: list[int] = []  # the variant of each row of x
    x = torch.empty(0, stop - start, cfg.d_model, device=device, dtype=dtype)  # [B_active, m, d_model]
    for index in range(min(layer for layer, _ in variants), cfg.n_layers):
        stored = base.layers[index]
        joining = [i for i, (layer, _) in enumerate(variants) if layer == index]
        x = torch.cat([x, stored["resid_pre"][start:stop].expand(len(joining), -1, -1)])
        active += joining
        own = base.patch.get(index, {})
        patches = [_in_range(_merged(own, checked[i] if variants[i][0] == index else {}), start, stop)
                   for i in active]
        past = (stored["k_kv"][:, :start], stored["v_kv"][:, :start])  # [n_kv_heads, start, d_head] each
        x = block(x, base._weights.blocks[index], cfg, base.causal, heads_on[index], ropes[index], patches,
                  base.attention, extend=after(*past), layer=index)
    out = torch.empty_like(x)
    out[torch.tensor(active, device=x.device)] = x
    return out


def _merged(own: LayerPatch, extra: LayerPatch) -> dict[int, dict[int, torch.Tensor]]:
    """Base's own patch of a layer with a variant's on top."""
    out = {head: dict(at) for head, at in own.items()}
    for head, at in extra.items():
        out.setdefault(head, {}).update(at)
    return out


def _in_range(patch: LayerPatch, start: int, stop: int) -> dict[int, dict[int, torch.Tensor]]:
    """The patch's positions start..stop-1, shifted to index the computed positions."""
    return {head: {p - start: z for p, z in at.items() if start <= p < stop} for head, at in patch.items()}
