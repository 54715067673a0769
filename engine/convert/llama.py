"""Llama (and Mistral): rotary positions, pre-RMSNorm, SwiGLU MLP, grouped-query attention."""

from __future__ import annotations

import torch

from ..config import ModelConfig
from ..errors import UnsupportedModelError


def config_from_hf(hf: dict, name: str, state: dict) -> ModelConfig:
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        raise UnsupportedModelError(f"{name}: rotary scaling {rope_type!r} is not supported (only plain RoPE).")
    if hf.get("sliding_window") and hf.get("use_sliding_window", True) and hf["sliding_window"] < hf.get(
            "max_position_embeddings", 0):
        raise UnsupportedModelError(f"{name}: sliding-window attention is not supported.")
    n_heads = hf["num_attention_heads"]
    d_head = hf.get("head_dim") or hf["hidden_size"] // n_heads
    has_lm_head = True
    return ModelConfig(
        name=name, family="llama", n_layers=hf["num_hidden_layers"], n_heads=n_heads,
        n_kv_heads=hf.get("num_key_value_heads") or n_heads, d_model=hf["hidden_size"], d_head=d_head,
        d_mlp=hf["intermediate_size"], d_vocab=hf["vocab_size"], max_tokens=hf.get("max_position_embeddings", 2048),
        causal=True, norm="rmsnorm", norm_placement="pre", norm_eps=hf.get("rms_norm_eps", 1e-6),
        positions="rotary", rope_theta=float(rope.get("rope_theta", hf.get("rope_theta", 10_000.0))),
        mlp="swiglu", act=hf.get("hidden_act", "silu"), has_lm_head=has_lm_head,
    )


def convert_weights(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    from . import heads_in, heads_out, strip_prefix

    s = strip_prefix(state, ("model.",))
    p = {"embed.W_E": s["embed_tokens.weight"], "ln_final.w": s["norm.weight"]}
    for layer in range(cfg.n_layers):
        b, a = f"layers.{layer}.", f"blocks.{layer}.attn."
        for part, n in (("q", cfg.n_heads), ("k", cfg.n_kv_heads), ("v", cfg.n_kv_heads)):
            p[a + "W_" + part.upper()] = heads_in(s[f"{b}self_attn.{part}_proj.weight"], n)
            if f"{b}self_attn.{part}_proj.bias" in s:
                p[a + "b_" + part.upper()] = s[f"{b}self_attn.{part}_proj.bias"].reshape(n, -1)
        p[a + "W_O"] = heads_out(s[b + "self_attn.o_proj.weight"], cfg.n_heads)
        if b + "self_attn.o_proj.bias" in s:
            p[a + "b_O"] = s[b + "self_attn.o_proj.bias"]
        for ours, theirs in (("in", "up"), ("gate", "gate"), ("out", "down")):
            p[f"blocks.{layer}.mlp.W_{ours}"] = s[f"{b}mlp.{theirs}_proj.weight"].T
            if f"{b}mlp.{theirs}_proj.bias" in s:
                p[f"blocks.{layer}.mlp.b_{ours}"] = s[f"{b}mlp.{theirs}_proj.bias"]
        p[f"blocks.{layer}.ln1.w"] = s[b + "input_layernorm.weight"]
        p[f"blocks.{layer}.ln2.w"] = s[b + "post_attention_layernorm.weight"]
    p["unembed.W_U"] = s.get("lm_head.weight", s["embed_tokens.weight"]).T
    return p
