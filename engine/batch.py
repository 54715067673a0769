"""Several patched variants of one run, computed together as a batch from the patched layer on.

A patching sweep runs the same tokens many times, each with some heads' z replaced in one layer. The layers
before it are the base run's; from it on, the variants differ. Here they run as one batch [B, m, d_model]
in one pass over the layers (a variant joins at its layer), so each weight matrix is read once for all of
them, and nothing is recorded: the result is the last block's output of each variant. Under a causal mask
a patch at position p changes nothing before p, so only the query positions asked for (e.g. just the
target) are computed, against the base run's stored keys and values of the earlier positions. The math is
transformer.block's, term for term (tests hold the two equal).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from .config import ModelConfig
from .errors import InputError
from .interventions import check_patch
from .trace import Trace
from .transformer import attention_z, mlp, norm, rotary, rotary_angles
from .weights import AttentionWeights, BlockWeights

# per variant: head -> query position -> z [d_head]
LayerPatch = Mapping[int, Mapping[int, torch.Tensor]]
# keys and values of the positions before the computed ones: [n_kv_heads, p, d_head] each
Past = tuple[torch.Tensor, torch.Tensor]


def _project(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """x [B, m, d_model] through per-head W [h, d_model, d_head] -> [B, h, m, d_head]."""
    out = torch.einsum("bmd,hde->bhme", x, W)
    return out if b is None else out + b[:, None, :]


def _attention(x: torch.Tensor, w: AttentionWeights, cfg: ModelConfig, causal: bool, heads_on: torch.Tensor,
               rope: tuple[torch.Tensor, torch.Tensor] | None, past: Past, patches: Sequence[LayerPatch],
               how: str) -> torch.Tensor:
    """Attention of the queries x [B, m, d_model] (normed) over past + their own keys: [B, m, d_model]."""
    q = _project(x, w.W_Q, w.b_Q)  # [B, n_heads, m, d_head]
    k = _project(x, w.W_K, w.b_K)  # [B, n_kv_heads, m, d_head]
    v = _project(x, w.W_V, w.b_V)
    if rope is not None:
        q, k = rotary(q, *rope), rotary(k, *rope)
    B = x.shape[0]
    k = torch.cat([past[0].expand(B, -1, -1, -1), k], dim=2)  # [B, n_kv_heads, p + m, d_head]
    v = torch.cat([past[1].expand(B, -1, -1, -1), v], dim=2)
    k_all = k.repeat_interleave(cfg.kv_group, dim=1)  # [B, n_heads, p + m, d_head]
    v_all = v.repeat_interleave(cfg.kv_group, dim=1)
    z = attention_z(q, k_all, v_all, causal, how) * heads_on[:, None, None]  # [B, n_heads, m, d_head]
    for variant, patch in enumerate(patches):
        for head, positions in patch.items():
            for position, vector in positions.items():
                z[variant, head, position] = vector
    attn_out = torch.einsum("bhme,hed->bmd", z, w.W_O)  # [B, m, d_model]
    return attn_out if w.b_O is None else attn_out + w.b_O


def _block(x: torch.Tensor, w: BlockWeights, cfg: ModelConfig, causal: bool, heads_on: torch.Tensor,
           rope: tuple[torch.Tensor, torch.Tensor] | None, past: Past, patches: Sequence[LayerPatch],
           how: str) -> torch.Tensor:
    """One block on x [B, m, d_model] -> resid_post [B, m, d_model] (pre-norm or post-norm)."""
    if cfg.norm_placement == "pre":
        attn_out = _attention(norm(x, w.ln1, cfg), w.attn, cfg, causal, heads_on, rope, past, patches, how)
        resid_mid = x + attn_out
        return resid_mid + mlp(norm(resid_mid, w.ln2, cfg), w.mlp, cfg)
    resid_mid = norm(x + _attention(x, w.attn, cfg, causal, heads_on, rope, past, patches, how), w.ln1, cfg)
    return norm(resid_mid + mlp(resid_mid, w.mlp, cfg), w.ln2, cfg)


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
    rope = None
    if cfg.positions == "rotary":
        rope = rotary_angles(cfg, torch.arange(start, stop, device=device))
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
        x = _block(x, base._weights.blocks[index], cfg, base.causal, heads_on[index], rope, past, patches,
                   base.attention)
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
