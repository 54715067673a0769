"""Llama and the families that differ from it by configuration alone: Mistral (a sliding window), Qwen2 (biases
on q, k, v; windows if switched on), Qwen3 (per-head q/k norms, its own head_dim) and OLMo 2 (q/k norms over the
whole projection, norms after attention and MLP instead of before). Rotary positions, RMSNorm, SwiGLU MLP,
grouped-query attention. Gemma and Phi-3 build on this module (gemma.py, phi3.py)."""

from __future__ import annotations

import torch

from ..config import ModelConfig
from . import heads_in, heads_out, rope_of, strip_prefix, windows_of

QK_NORM = {"qwen3": "head", "olmo2": "all", "gemma3_text": "head"}
# ours <- theirs, per block: which RMSNorms a family has and where they stand (see BlockWeights)
NORMS = {
    "llama": (("ln1", "input_layernorm"), ("ln2", "post_attention_layernorm")),
    "olmo2": (("ln1_post", "post_attention_layernorm"), ("ln2_post", "post_feedforward_layernorm")),
    "sandwich": (("ln1", "input_layernorm"), ("ln1_post", "post_attention_layernorm"),
                 ("ln2", "pre_feedforward_layernorm"), ("ln2_post", "post_feedforward_layernorm")),
}


def config_from_hf(hf: dict, name: str, state: dict) -> ModelConfig:
    model_type = hf["model_type"]
    theta, rotary_fraction = rope_of(hf, name)
    n_heads, n_layers = hf["num_attention_heads"], hf["num_hidden_layers"]
    d_head = hf.get("head_dim") or hf["hidden_size"] // n_heads
    max_tokens = hf.get("max_position_embeddings", 2048)
    return ModelConfig(
        name=name, family=model_type, n_layers=n_layers, n_heads=n_heads,
        n_kv_heads=hf.get("num_key_value_heads") or n_heads, d_model=hf["hidden_size"], d_head=d_head,
        d_mlp=hf["intermediate_size"], d_vocab=hf["vocab_size"], max_tokens=max_tokens,
        causal=True, norm="rmsnorm", norm_placement="pre", norm_eps=hf.get("rms_norm_eps", 1e-6),
        positions="rotary", rope_theta=theta, mlp="swiglu", act=hf.get("hidden_act", "silu"),
        rotary_dim=int(d_head * rotary_fraction) if rotary_fraction < 1 else 0,
        windows=windows_of(hf, n_layers, max_tokens), qk_norm=QK_NORM.get(model_type, ""),
    )


def convert_weights(state: dict[str, torch.Tensor], cfg: ModelConfig, norms: str | None = None
                    ) -> dict[str, torch.Tensor]:
    """The uniform layout from Llama's names (q_proj, k_proj, v_proj, o_proj, gate/up/down_proj, the norms that
    NORMS[norms or family] lists, q_norm/k_norm where cfg.qk_norm)."""
    s = strip_prefix(state, ("model.",))
    p = {"embed.W_E": s["embed_tokens.weight"], "ln_final.w": s["norm.weight"]}
    norm_names = NORMS[norms or ("olmo2" if cfg.family == "olmo2" else "llama")]
    for layer in range(cfg.n_layers):
        b, a = f"layers.{layer}.", f"blocks.{layer}.attn."
        for part, n in (("q", cfg.n_heads), ("k", cfg.n_kv_heads), ("v", cfg.n_kv_heads)):
            p[a + "W_" + part.upper()] = heads_in(s[f"{b}self_attn.{part}_proj.weight"], n)
            if f"{b}self_attn.{part}_proj.bias" in s:
                p[a + "b_" + part.upper()] = s[f"{b}self_attn.{part}_proj.bias"].reshape(n, -1)
        if cfg.qk_norm:
            for part, n in (("q", cfg.n_heads), ("k", cfg.n_kv_heads)):
                w = s[f"{b}self_attn.{part}_norm.weight"]  # [d_head] per head, [n·d_head] over all heads
                p[f"{a}{part}_norm.w"] = w if cfg.qk_norm == "head" else w.reshape(n, 1, cfg.d_head)
        p[a + "W_O"] = heads_out(s[b + "self_attn.o_proj.weight"], cfg.n_heads)
        if b + "self_attn.o_proj.bias" in s:
            p[a + "b_O"] = s[b + "self_attn.o_proj.bias"]
        for ours, theirs in (("in", "up"), ("gate", "gate"), ("out", "down")):
            p[f"blocks.{layer}.mlp.W_{ours}"] = s[f"{b}mlp.{theirs}_proj.weight"].T
            if f"{b}mlp.{theirs}_proj.bias" in s:
                p[f"blocks.{layer}.mlp.b_{ours}"] = s[f"{b}mlp.{theirs}_proj.bias"]
        for ours, theirs in norm_names:
            p[f"blocks.{layer}.{ours}.w"] = s[f"{b}{theirs}.weight"]
    p["unembed.W_U"] = s.get("lm_head.weight", s["embed_tokens.weight"]).T
    return p
