"""Norms with their scale frozen at the run's value: the linear maps that let a residual stream be split into parts.

A norm at position i divides its input by a statistic of the whole input (LayerNorm: σ_i, after centring;
RMSNorm: rms_i). Freeze that statistic at the run's value and the norm is a linear map f_i plus a constant
(LayerNorm's bias), so a sum of parts goes through it part by part and the parts still add up exactly:

    LayerNorm  f_i(p) = (p − mean(p)) ⊙ w / σ_i        σ_i = sqrt(var(x_i) + eps)
    RMSNorm    f_i(p) = p ⊙ w / rms_i                  rms_i = sqrt(mean(x_i²) + eps)

`pull_back` is its transpose (a read-out vector g seen through the norm: f_i(p)·g = p·f_iᵀ(g)). The same
freezing makes the other norms of the newer families linear too: the output norms after attention (Gemma 2/3,
OLMo 2: attn_out = norm(Σ head_out + b_O), frozen at the position's statistic of that sum) and the q/k norms
(Qwen3, Gemma 3 per head; OLMo 2 over the whole projection, frozen at the position's (and head's) statistic).
`check_linear` lists the configuration fields the analyses handle; a field added later and set away from its
default gets a clear EngineError instead of wrong numbers.

`residual_parts` splits the residual stream entering a layer at one position into its parts: "embed",
"bias" (every bias and norm bias together), "L.H" (each head of each earlier layer), "L.mlp". Post-norm
models (BERT) carry the parts through every earlier norm with its scale frozen at that position.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from ..config import ModelConfig
from ..errors import EngineError
from ..trace import Trace
from ..weights import NormWeights

# ModelConfig fields whose every value these analyses handle; any other field must keep its default.
HANDLED = {"name", "family", "n_layers", "n_heads", "n_kv_heads", "d_model", "d_head", "d_mlp", "d_vocab",
           "max_tokens", "causal", "norm", "norm_placement", "norm_eps", "positions", "mlp", "act", "rope_theta",
           "n_token_types", "has_lm_head", "lm_head_transform", "eos_token_ids",
           # what the newer families change: each is handled exactly (see the analyses' modules)
           "parallel", "rotary_dim", "rotary_interleaved", "layer_rope_theta", "windows", "attn_scale",
           "attn_softcap", "final_softcap", "embed_scale", "qk_norm"}


def check_linear(cfg: ModelConfig, what: str) -> None:
    """Raise EngineError when the configuration turns on a feature that `what` does not handle (a field added
    for a newer family and set away from its default: a soft-cap, q/k norms, a parallel block, ...)."""
    unhandled = [f"{f.name}={getattr(cfg, f.name)!r}" for f in dataclasses.fields(cfg)
                 if f.name not in HANDLED and getattr(cfg, f.name) != _default(f)]
    if unhandled:
        raise EngineError(f"{what} does not handle {cfg.name}'s {', '.join(unhandled)} yet: a feature "
                          "the analysis has not been extended to.")
    if cfg.norm not in ("layernorm", "rmsnorm") or cfg.norm_placement not in ("pre", "post"):
        raise EngineError(f"{what} does not handle {cfg.name}'s norm ({cfg.norm}, {cfg.norm_placement}).")


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return object()  # no default: never equal, so a new required field is reported


def scale(x: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """The statistic a norm divides its input x [..., d_model] by: σ (LayerNorm) or rms (RMSNorm), [..., 1]."""
    x = x.double()
    if cfg.norm == "rmsnorm":
        return (x.pow(2).mean(-1, keepdim=True) + cfg.norm_eps).sqrt()
    return (x.var(-1, unbiased=False, keepdim=True) + cfg.norm_eps).sqrt()


def apply(parts: torch.Tensor, w: NormWeights, s: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """f(parts) [..., d_model] with the frozen scale s (broadcast against parts); the norm's bias not added."""
    if cfg.norm == "layernorm":
        parts = parts - parts.mean(-1, keepdim=True)
    return parts * (w.w.double() / s)


def pull_back(g: torch.Tensor, w: NormWeights, s: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """fᵀ(g): the read-out vector g [d_model] seen before the norm (frozen scale s [1])."""
    out = g * (w.w.double() / s)
    return out - out.mean() if cfg.norm == "layernorm" else out


def bias_of(w: NormWeights) -> torch.Tensor | None:
    return None if w.b is None else w.b.double()


def part_names(cfg: ModelConfig, layer: int) -> list[str]:
    """The names of the parts of the residual stream entering `layer`, in the order residual_parts gives them."""
    names = ["embed", "bias"]
    for earlier in range(layer):
        names += [f"{earlier}.{h}" for h in range(cfg.n_heads)] + [f"{earlier}.mlp"]
    return names


def residual_parts(trace: Trace, layer: int, positions: Sequence[int]) -> torch.Tensor:
    """[n_parts, m, d_model] float64: the parts (names: part_names) of resid_pre[layer] at each of `positions`;
    they sum to it.

    A head's part is its head_out (its z through W_O; b_V rides in z); the bias part holds every b_O and, for
    post-norm models, every norm's bias. Post-norm: each earlier block's two norms are applied to every part
    with their scale frozen at each position. An output norm after attention (Gemma 2/3, OLMo 2) is applied to
    each head's part and b_O, frozen at each position's Σ head_out + b_O; a parallel block (GPT-NeoX, GPT-J)
    adds the same parts."""
    cfg, w = trace.config, trace._weights
    index = torch.tensor(list(positions), dtype=torch.long, device=trace.device)
    embed = trace.layers[0]["resid_pre"][index].double()  # [m, d_model]
    out = torch.stack([embed, torch.zeros_like(embed)])  # [2, m, d_model]: embed, bias
    for earlier in range(layer):
        stored, block = trace.layers[earlier], w.blocks[earlier]
        z = stored["z"][:, index]  # [n_heads, m, d_head]
        heads = torch.einsum("hme,hed->hmd", z, block.attn.W_O).double()  # [n_heads, m, d_model]
        b_O = torch.zeros_like(embed) if block.attn.b_O is None else block.attn.b_O.double().expand_as(embed)
        if block.ln1_post is not None:  # attn_out = norm(Σ heads + b_O): each part through it, its scale frozen
            s = scale(heads.sum(0) + b_O, cfg)  # [m, 1]
            heads, b_O = apply(heads, block.ln1_post, s, cfg), apply(b_O, block.ln1_post, s, cfg)
            if block.ln1_post.b is not None:
                b_O = b_O + block.ln1_post.b.double()
        out[1] = out[1] + b_O
        if cfg.norm_placement == "post":
            attn_sum = stored["resid_pre"][index].double() + stored["attn_out"][index].double()  # [m, d_model]
            out = apply(torch.cat([out, heads]), block.ln1, scale(attn_sum, cfg), cfg)
            if block.ln1.b is not None:
                out[1] = out[1] + block.ln1.b.double()
            mlp_out = stored["mlp_out"][index].double()
            mlp_sum = stored["resid_mid"][index].double() + mlp_out
            out = apply(torch.cat([out, mlp_out[None]]), block.ln2, scale(mlp_sum, cfg), cfg)
            if block.ln2.b is not None:
                out[1] = out[1] + block.ln2.b.double()
        else:  # mlp_out is one part whatever its output norm (Gemma 2/3, OLMo 2): the stored sum
            out = torch.cat([out, heads, stored["mlp_out"][index].double()[None]])
    return out


def freeze_qk_norm(parts: torch.Tensor, w: NormWeights, full: torch.Tensor, head: int, cfg: ModelConfig
                   ) -> torch.Tensor:
    """Parts [n_parts, d_head] of one head's q (or k) at one position through its q/k RMSNorm, the statistic
    frozen at the run's value: over the head's own q ("head": Qwen3, Gemma 3) or over the whole projection of
    that position ("all": OLMo 2). full: the whole projection at the position, [n_heads, d_head] (pre-norm)."""
    whole = full[head] if cfg.qk_norm == "head" else full
    rms = (whole.double().pow(2).mean() + cfg.norm_eps).sqrt()
    weight = w.w.double() if cfg.qk_norm == "head" else w.w.double()[head, 0]  # [d_head]
    return parts * weight / rms
