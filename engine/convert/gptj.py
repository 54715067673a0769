"""GPT-J: one LayerNorm feeding attention and MLP in parallel, rotary on the first rotary_dim dimensions of each
head with interleaved pairs, no attention biases, an unembedding with a bias."""

from __future__ import annotations

import torch

from ..config import ModelConfig
from . import act_of, final, linear_block, strip_prefix


def config_from_hf(hf: dict, name: str, state: dict) -> ModelConfig:
    d_model, n_heads = hf["n_embd"], hf["n_head"]
    d_head = d_model // n_heads
    rotary_dim = hf.get("rotary_dim") or d_head
    return ModelConfig(
        name=name, family="gptj", n_layers=hf["n_layer"], n_heads=n_heads, n_kv_heads=n_heads, d_model=d_model,
        d_head=d_head, d_mlp=hf.get("n_inner") or 4 * d_model, d_vocab=hf["vocab_size"], max_tokens=hf["n_positions"],
        causal=True, norm="layernorm", norm_placement="pre", norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        positions="rotary", rope_theta=10_000.0, mlp="gelu", act=act_of(hf, "activation_function", name, "gelu_new"),
        rotary_dim=rotary_dim if rotary_dim < d_head else 0, rotary_interleaved=True, parallel=True,
    )


def convert_weights(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    s = strip_prefix(state, ("transformer.",))
    p = final(s, "ln_f", "wte.weight", "lm_head")
    for layer in range(cfg.n_layers):  # ln2 is ln_1 again: the MLP reads the same normed resid_pre
        p |= linear_block(s, f"h.{layer}.", layer, cfg, {
            "W_Q": "attn.q_proj", "W_K": "attn.k_proj", "W_V": "attn.v_proj", "W_O": "attn.out_proj",
            "W_in": "mlp.fc_in", "W_out": "mlp.fc_out", "ln1": "ln_1", "ln2": "ln_1"})
    return p
