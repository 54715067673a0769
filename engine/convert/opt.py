"""OPT: learned positions stored with an offset of 2 (rows 0 and 1 unused), pre-LayerNorm, ReLU MLP, biases
everywhere. The variants with a projection around the blocks (opt-350m: post-norm, word_embed_proj_dim) are
refused."""

from __future__ import annotations

import torch

from ..config import ModelConfig
from ..errors import UnsupportedModelError
from . import act_of, final, linear_block, strip_prefix

POSITION_OFFSET = 2


def config_from_hf(hf: dict, name: str, state: dict) -> ModelConfig:
    d_model, n_heads = hf["hidden_size"], hf["num_attention_heads"]
    if not hf.get("do_layer_norm_before", True) or hf.get("word_embed_proj_dim", d_model) != d_model \
            or hf.get("_remove_final_layer_norm") or hf.get("layer_norm_elementwise_affine") is False:
        raise UnsupportedModelError(f"{name}: OPT variants with post-norm blocks or an embedding projection "
                                    "(like opt-350m) are not supported.")
    act = act_of(hf, "activation_function", name, "relu")
    return ModelConfig(
        name=name, family="opt", n_layers=hf["num_hidden_layers"], n_heads=n_heads, n_kv_heads=n_heads,
        d_model=d_model, d_head=d_model // n_heads, d_mlp=hf["ffn_dim"], d_vocab=hf["vocab_size"],
        max_tokens=hf.get("max_position_embeddings", 2048), causal=True, norm="layernorm", norm_placement="pre",
        norm_eps=1e-5, positions="learned", mlp="relu" if act == "relu" else "gelu", act=act,
    )


def convert_weights(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    s = strip_prefix(state, ("model.decoder.", "decoder."))
    p = final(s, "final_layer_norm", "embed_tokens.weight", "lm_head")
    p["pos_embed.W_pos"] = s["embed_positions.weight"][POSITION_OFFSET:]
    for layer in range(cfg.n_layers):
        p |= linear_block(s, f"layers.{layer}.", layer, cfg, {
            "W_Q": "self_attn.q_proj", "W_K": "self_attn.k_proj", "W_V": "self_attn.v_proj",
            "W_O": "self_attn.out_proj", "W_in": "fc1", "W_out": "fc2", "ln1": "self_attn_layer_norm",
            "ln2": "final_layer_norm"})
    return p
