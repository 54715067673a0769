"""Per-family converters: a Hugging Face config + state dict -> (ModelConfig, weights in the uniform layout).

Uniform names (TransformerLens's): `embed.W_E [d_vocab, d_model]`, `pos_embed.W_pos`, `blocks.{l}.attn.W_Q
[n_heads, d_model, d_head]`, `W_K`/`W_V [n_kv_heads, d_model, d_head]`, `W_O [n_heads, d_head, d_model]`,
biases `b_Q [n_heads, d_head]` ..., `b_O [d_model]`, `blocks.{l}.ln1.w`, `blocks.{l}.mlp.W_in [d_model, d_mlp]`,
`W_gate`, `W_out [d_mlp, d_model]`, `ln_final.w`, `unembed.W_U [d_model, d_vocab]`.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ..config import ModelConfig
from ..errors import UnsupportedModelError
from . import bert, gpt2, llama

CONVERTERS = {"gpt2": gpt2, "llama": llama, "mistral": llama, "bert": bert}


def family_of(hf_config: dict, name: str):
    """The converter module for a checkpoint's `model_type`, or UnsupportedModelError."""
    model_type = hf_config.get("model_type", "?")
    family = CONVERTERS.get(model_type) if isinstance(model_type, str) else None
    if family is None:
        raise UnsupportedModelError(
            f"{name}: architecture {model_type!r} is not supported. Supported families: GPT-2 (gpt2), "
            "Llama (llama, mistral) and BERT (bert). Pick a checkpoint of one of those."
        )
    return family


def config_of(hf_config: dict, name: str, state: dict | None = None) -> ModelConfig:
    """ModelConfig from a checkpoint's config.json (before or after its weights are read)."""
    family = family_of(hf_config, name)
    try:
        cfg = family.config_from_hf(hf_config, name, state or {})
        eos = hf_config.get("eos_token_id")
        eos = [eos] if isinstance(eos, int) else [int(e) for e in eos or []]
        return replace(cfg, eos_token_ids=tuple(eos))
    except (KeyError, TypeError, ValueError, ZeroDivisionError, AttributeError) as err:
        raise UnsupportedModelError(
            f"{name}: its config.json is incomplete or malformed for {hf_config.get('model_type')!r} "
            f"({type(err).__name__}: {err})."
        ) from None


def convert(hf_config: dict, state: dict[str, torch.Tensor], name: str) -> tuple[ModelConfig, dict]:
    """Pick the family's converter by `model_type` and return (config, params)."""
    cfg = config_of(hf_config, name, state)
    try:
        return cfg, family_of(hf_config, name).convert_weights(state, cfg)
    except KeyError as missing:
        raise UnsupportedModelError(
            f"{name}: the checkpoint says {hf_config.get('model_type')!r} but lacks the weight {missing}; "
            "it may be a variant this engine does not implement."
        ) from None


def strip_prefix(state: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Drop a leading model prefix (`transformer.`, `model.`, `bert.`) so keys are uniform."""
    out = {}
    for key, value in state.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        out[key] = value
    return out


def heads_in(W: torch.Tensor, n_heads: int) -> torch.Tensor:
    """nn.Linear weight [n_heads*d_head, d_model] -> per-head [n_heads, d_model, d_head]."""
    return W.T.reshape(W.shape[1], n_heads, -1).permute(1, 0, 2).contiguous()


def heads_out(W: torch.Tensor, n_heads: int) -> torch.Tensor:
    """nn.Linear weight [d_model, n_heads*d_head] -> per-head [n_heads, d_head, d_model]."""
    return W.T.reshape(n_heads, -1, W.shape[0]).contiguous()
