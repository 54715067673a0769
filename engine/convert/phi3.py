"""Phi-3: Llama with fused projections (qkv_proj, gate_up_proj), split here into Llama's names."""

from __future__ import annotations

import torch

from ..config import ModelConfig
from . import llama, split_rows

config_from_hf = llama.config_from_hf


def convert_weights(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    s = dict(state)
    qkv = [cfg.n_heads * cfg.d_head, cfg.n_kv_heads * cfg.d_head, cfg.n_kv_heads * cfg.d_head]
    for layer in range(cfg.n_layers):
        b = f"model.layers.{layer}."
        parts = split_rows(s.pop(b + "self_attn.qkv_proj.weight"), qkv)
        for part, W in zip("qkv", parts, strict=True):
            s[f"{b}self_attn.{part}_proj.weight"] = W
        gate, up = split_rows(s.pop(b + "mlp.gate_up_proj.weight"), [cfg.d_mlp, cfg.d_mlp])
        s[b + "mlp.gate_proj.weight"], s[b + "mlp.up_proj.weight"] = gate, up
    return llama.convert_weights(s, cfg)
