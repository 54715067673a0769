"""GPT-2 (and distilgpt2): learned positions, pre-LayerNorm, GELU MLP, Conv1D weights (x @ W)."""

from __future__ import annotations

import torch

from ..config import ModelConfig
from ..errors import UnsupportedModelError


def config_from_hf(hf: dict, name: str, state: dict) -> ModelConfig:
    if hf.get("scale_attn_by_inverse_layer_idx") or hf.get("scale_attn_weights") is False:
        raise UnsupportedModelError(f"{name}: GPT-2 variants with non-standard attention scaling are not supported.")
    d_model, n_heads = hf["n_embd"], hf["n_head"]
    return ModelConfig(
        name=name, family="gpt2", n_layers=hf["n_layer"], n_heads=n_heads, n_kv_heads=n_heads,
        d_model=d_model, d_head=d_model // n_heads, d_mlp=hf.get("n_inner") or 4 * d_model,
        d_vocab=hf["vocab_size"], max_tokens=hf["n_positions"], causal=True, norm="layernorm",
        norm_placement="pre", norm_eps=hf.get("layer_norm_epsilon", 1e-5), positions="learned", mlp="gelu",
        act=hf.get("activation_function", "gelu_new"),
    )


def convert_weights(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    from . import strip_prefix

    s = strip_prefix(state, ("transformer.",))
    h, d = cfg.n_heads, cfg.d_model
    p = {"embed.W_E": s["wte.weight"], "pos_embed.W_pos": s["wpe.weight"],
         "ln_final.w": s["ln_f.weight"], "ln_final.b": s["ln_f.bias"]}
    for layer in range(cfg.n_layers):
        b = f"h.{layer}."
        W_qkv, b_qkv = s[b + "attn.c_attn.weight"], s[b + "attn.c_attn.bias"]  # [d_model, 3*d_model]
        for i, part in enumerate("QKV"):
            W = W_qkv[:, i * d:(i + 1) * d]  # [d_model, n_heads*d_head]
            p[f"blocks.{layer}.attn.W_{part}"] = W.reshape(d, h, -1).permute(1, 0, 2).contiguous()
            p[f"blocks.{layer}.attn.b_{part}"] = b_qkv[i * d:(i + 1) * d].reshape(h, -1)
        p[f"blocks.{layer}.attn.W_O"] = s[b + "attn.c_proj.weight"].reshape(h, -1, d)
        p[f"blocks.{layer}.attn.b_O"] = s[b + "attn.c_proj.bias"]
        p[f"blocks.{layer}.mlp.W_in"] = s[b + "mlp.c_fc.weight"]
        p[f"blocks.{layer}.mlp.b_in"] = s[b + "mlp.c_fc.bias"]
        p[f"blocks.{layer}.mlp.W_out"] = s[b + "mlp.c_proj.weight"]
        p[f"blocks.{layer}.mlp.b_out"] = s[b + "mlp.c_proj.bias"]
        for i in (1, 2):
            p[f"blocks.{layer}.ln{i}.w"] = s[f"{b}ln_{i}.weight"]
            p[f"blocks.{layer}.ln{i}.b"] = s[f"{b}ln_{i}.bias"]
    p["unembed.W_U"] = s.get("lm_head.weight", s["wte.weight"]).T  # tied to W_E in GPT-2
    return p
