"""BERT (and MiniLM): learned positions + token types, post-LayerNorm, GELU MLP, bidirectional."""

from __future__ import annotations

import torch

from ..config import ModelConfig
from ..errors import UnsupportedModelError


def config_from_hf(hf: dict, name: str, state: dict) -> ModelConfig:
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise UnsupportedModelError(f"{name}: BERT with {hf['position_embedding_type']!r} positions is not supported.")
    n_heads = hf["num_attention_heads"]
    has_mlm = any(k.startswith("cls.predictions.") for k in state)
    return ModelConfig(
        name=name, family="bert", n_layers=hf["num_hidden_layers"], n_heads=n_heads, n_kv_heads=n_heads,
        d_model=hf["hidden_size"], d_head=hf["hidden_size"] // n_heads, d_mlp=hf["intermediate_size"],
        d_vocab=hf["vocab_size"], max_tokens=hf.get("max_position_embeddings", 512), causal=False,
        norm="layernorm", norm_placement="post", norm_eps=hf.get("layer_norm_eps", 1e-12), positions="learned",
        mlp="gelu", act={"gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new"}.get(hf.get("hidden_act"), "gelu"),
        n_token_types=hf.get("type_vocab_size", 2), has_lm_head=has_mlm, lm_head_transform=has_mlm,
    )


def convert_weights(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    from . import heads_in, heads_out, strip_prefix

    s = strip_prefix(state, ("bert.",))
    e = "embeddings."
    p = {"embed.W_E": s[e + "word_embeddings.weight"], "pos_embed.W_pos": s[e + "position_embeddings.weight"],
         "token_type_embed.W_type": s[e + "token_type_embeddings.weight"],
         "embed_ln.w": s[e + "LayerNorm.weight"], "embed_ln.b": s[e + "LayerNorm.bias"]}
    for layer in range(cfg.n_layers):
        b, a = f"encoder.layer.{layer}.", f"blocks.{layer}.attn."
        for ours, theirs in (("Q", "query"), ("K", "key"), ("V", "value")):
            p[a + "W_" + ours] = heads_in(s[f"{b}attention.self.{theirs}.weight"], cfg.n_heads)
            p[a + "b_" + ours] = s[f"{b}attention.self.{theirs}.bias"].reshape(cfg.n_heads, -1)
        p[a + "W_O"] = heads_out(s[b + "attention.output.dense.weight"], cfg.n_heads)
        p[a + "b_O"] = s[b + "attention.output.dense.bias"]
        p[f"blocks.{layer}.ln1.w"] = s[b + "attention.output.LayerNorm.weight"]
        p[f"blocks.{layer}.ln1.b"] = s[b + "attention.output.LayerNorm.bias"]
        p[f"blocks.{layer}.mlp.W_in"] = s[b + "intermediate.dense.weight"].T
        p[f"blocks.{layer}.mlp.b_in"] = s[b + "intermediate.dense.bias"]
        p[f"blocks.{layer}.mlp.W_out"] = s[b + "output.dense.weight"].T
        p[f"blocks.{layer}.mlp.b_out"] = s[b + "output.dense.bias"]
        p[f"blocks.{layer}.ln2.w"] = s[b + "output.LayerNorm.weight"]
        p[f"blocks.{layer}.ln2.b"] = s[b + "output.LayerNorm.bias"]
    if cfg.has_lm_head:
        t = "cls.predictions."
        p["unembed.W_dense"] = s[t + "transform.dense.weight"].T
        p["unembed.b_dense"] = s[t + "transform.dense.bias"]
        p["unembed_ln.w"] = s[t + "transform.LayerNorm.weight"]
        p["unembed_ln.b"] = s[t + "transform.LayerNorm.bias"]
        p["unembed.W_U"] = s.get(t + "decoder.weight", s[e + "word_embeddings.weight"]).T
        p["unembed.b_U"] = s.get(t + "bias", s.get(t + "decoder.bias"))
    return p
