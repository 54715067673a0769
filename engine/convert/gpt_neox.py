"""GPT-NeoX / Pythia: fused QKV laid out per head, rotary on a fraction of each head, attention and MLP in
parallel (both read resid_pre), LayerNorm, GELU MLP, an untied unembedding."""

from __future__ import annotations

import torch

from ..config import ModelConfig
from . import act_of, final, linear_block, rope_of, strip_prefix


def config_from_hf(hf: dict, name: str, state: dict) -> ModelConfig:
    theta, fraction = rope_of(hf, name)
    d_model, n_heads = hf["hidden_size"], hf["num_attention_heads"]
    d_head = d_model // n_heads
    return ModelConfig(
        name=name, family="gpt_neox", n_layers=hf["num_hidden_layers"], n_heads=n_heads, n_kv_heads=n_heads,
        d_model=d_model, d_head=d_head, d_mlp=hf["intermediate_size"], d_vocab=hf["vocab_size"],
        max_tokens=hf.get("max_position_embeddings", 2048), causal=True, norm="layernorm", norm_placement="pre",
        norm_eps=hf.get("layer_norm_eps", 1e-5), positions="rotary", rope_theta=theta, mlp="gelu",
        act=act_of(hf, "hidden_act", name), rotary_dim=int(d_head * fraction) if fraction < 1 else 0,
        parallel=bool(hf.get("use_parallel_residual", True)),
    )


def convert_weights(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    s = strip_prefix(state, ("gpt_neox.",))
    p = final(s, "final_layer_norm", "embed_in.weight", "embed_out")
    for layer in range(cfg.n_layers):
        b = f"layers.{layer}."
        for kind in ("weight", "bias"):  # rows [n_heads, 3 (q, k, v), d_head]
            fused = s.get(f"{b}attention.query_key_value.{kind}")
            if fused is not None:
                per_head = fused.reshape(cfg.n_heads, 3, cfg.d_head, *fused.shape[1:])
                for i, part in enumerate("qkv"):
                    s[f"{b}attention.{part}.{kind}"] = per_head[:, i].reshape(cfg.n_heads * cfg.d_head,
                                                                             *fused.shape[1:])
        p |= linear_block(s, b, layer, cfg, {"W_Q": "attention.q", "W_K": "attention.k", "W_V": "attention.v",
                                             "W_O": "attention.dense", "W_in": "mlp.dense_h_to_4h",
                                             "W_out": "mlp.dense_4h_to_h", "ln1": "input_layernorm",
                                             "ln2": "post_attention_layernorm"})
    return p
