"""Gemma 1, 2 and 3 (text): Llama's layout with GeGLU, embeddings scaled by √d_model and RMSNorm weights stored as
(w − 1). Gemma 2 adds norms after attention and MLP, soft-capped attention and final logits, alternating sliding
windows and query_pre_attn_scalar; Gemma 3 adds per-head q/k norms and a rotary base per layer type."""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from ..config import ModelConfig
from ..errors import UnsupportedModelError
from . import llama, rope_of


def legacy_layer_types(hf: dict) -> list[str] | None:
    """Which layers slide, for a config.json saved before `layer_types` existed."""
    n = hf["num_hidden_layers"]
    if hf["model_type"] == "gemma2":
        return ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n)]
    if hf["model_type"] == "gemma3_text":
        every = hf.get("sliding_window_pattern") or hf.get("_sliding_window_pattern") or 6
        return ["full_attention" if (i + 1) % every == 0 else "sliding_attention" for i in range(n)]
    return None


def config_from_hf(hf: dict, name: str, state: dict) -> ModelConfig:
    model_type = hf["model_type"]
    if model_type != "gemma" and not hf.get("layer_types"):
        hf = {**hf, "layer_types": legacy_layer_types(hf)}
    rope = hf.get("rope_parameters") or {}
    per_type = model_type == "gemma3_text" and "full_attention" in rope
    base = {**hf, "rope_parameters": rope["full_attention"]} if per_type else hf
    cfg = llama.config_from_hf(base, name, state)
    act = hf.get("hidden_activation") or hf.get("hidden_act") or "gelu_pytorch_tanh"
    if model_type == "gemma" and act == "gelu":  # the original Gemma releases say "gelu" and mean the tanh form
        act = "gelu_pytorch_tanh"
    if act not in ("gelu_pytorch_tanh", "gelu"):
        raise UnsupportedModelError(f"{name}: Gemma with activation {act!r} is not supported.")
    changes = {"mlp": "geglu", "act": "gelu_new" if act == "gelu_pytorch_tanh" else "gelu",
               "embed_scale": math.sqrt(cfg.d_model)}
    if model_type != "gemma":
        changes["attn_scale"] = float(hf.get("query_pre_attn_scalar") or cfg.d_head) ** -0.5
        changes["attn_softcap"] = float(hf.get("attn_logit_softcapping") or 0.0)
        changes["final_softcap"] = float(hf.get("final_logit_softcapping") or 0.0)
    if per_type:
        local, _ = rope_of({**hf, "rope_parameters": rope["sliding_attention"]}, name)
        changes["layer_rope_theta"] = tuple(local if t == "sliding_attention" else cfg.rope_theta
                                            for t in hf["layer_types"])
    elif model_type == "gemma3_text" and hf.get("rope_local_base_freq"):
        changes["layer_rope_theta"] = tuple(float(hf["rope_local_base_freq"]) if t == "sliding_attention"
                                            else cfg.rope_theta for t in hf["layer_types"])
    return replace(cfg, **changes)


def convert_weights(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Llama's names (with the four sandwich norms from Gemma 2 on); every RMSNorm weight w becomes 1 + w."""
    p = llama.convert_weights(state, cfg, norms="llama" if cfg.family == "gemma" else "sandwich")
    return {key: 1.0 + t if key.endswith("_norm.w") or key.endswith("ln_final.w") or ".ln" in key else t
            for key, t in p.items()}
