"""GPT-Neo: GPT-2's block with nn.Linear weights, scores not divided by √d_head, and local attention (a window of
window_size positions) on the layers that attention_layers marks 'local'."""

from __future__ import annotations

import torch

from ..config import ModelConfig
from . import act_of, final, linear_block, strip_prefix, windows_of


def config_from_hf(hf: dict, name: str, state: dict) -> ModelConfig:
    d_model, n_heads, n_layers = hf["hidden_size"], hf["num_heads"], hf["num_layers"]
    max_tokens = hf.get("max_position_embeddings", 2048)
    types = ["sliding_attention" if kind == "local" else "full_attention" for kind in hf["attention_layers"]]
    return ModelConfig(
        name=name, family="gpt_neo", n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_heads, d_model=d_model,
        d_head=d_model // n_heads, d_mlp=hf.get("intermediate_size") or 4 * d_model, d_vocab=hf["vocab_size"],
        max_tokens=max_tokens, causal=True, norm="layernorm", norm_placement="pre",
        norm_eps=hf.get("layer_norm_epsilon", 1e-5), positions="learned", mlp="gelu",
        act=act_of(hf, "activation_function", name, "gelu_new"), attn_scale=1.0,
        windows=windows_of({"sliding_window": hf.get("window_size"), "layer_types": types}, n_layers, max_tokens),
    )


def convert_weights(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    s = strip_prefix(state, ("transformer.",))
    p = final(s, "ln_f", "wte.weight", "lm_head") | {"pos_embed.W_pos": s["wpe.weight"]}
    for layer in range(cfg.n_layers):
        p |= linear_block(s, f"h.{layer}.", layer, cfg, {
            "W_Q": "attn.attention.q_proj", "W_K": "attn.attention.k_proj", "W_V": "attn.attention.v_proj",
            "W_O": "attn.attention.out_proj", "W_in": "mlp.c_fc", "W_out": "mlp.c_proj", "ln1": "ln_1", "ln2": "ln_2"})
    return p
