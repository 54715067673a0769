"""Per-family converters: a Hugging Face config + state dict -> (ModelConfig, weights in the uniform layout).

Uniform names (TransformerLens's): `embed.W_E [d_vocab, d_model]`, `pos_embed.W_pos`, `blocks.{l}.attn.W_Q
[n_heads, d_model, d_head]`, `W_K`/`W_V [n_kv_heads, d_model, d_head]`, `W_O [n_heads, d_head, d_model]`,
biases `b_Q [n_heads, d_head]` ..., `b_O [d_model]`, `blocks.{l}.ln1.w`, `blocks.{l}.mlp.W_in [d_model, d_mlp]`,
`W_gate`, `W_out [d_mlp, d_model]`, `ln_final.w`, `unembed.W_U [d_model, d_vocab]`.
"""

from __future__ import annotations

import importlib
from dataclasses import replace

import torch

from ..config import ModelConfig
from ..errors import UnsupportedModelError

# model_type -> (the family's name for people, its converter module's name in this package)
FAMILIES = {
    "gpt2": ("GPT-2", "gpt2"), "llama": ("Llama", "llama"), "bert": ("BERT", "bert"),
    "gpt_neox": ("GPT-NeoX / Pythia", "gpt_neox"), "gptj": ("GPT-J", "gptj"), "gpt_neo": ("GPT-Neo", "gpt_neo"),
    "opt": ("OPT", "opt"), "qwen2": ("Qwen2 / Qwen2.5", "llama"), "qwen3": ("Qwen3", "llama"),
    "mistral": ("Mistral", "llama"), "gemma": ("Gemma", "gemma"), "gemma2": ("Gemma 2", "gemma"),
    "gemma3_text": ("Gemma 3 (text)", "gemma"), "phi3": ("Phi-3", "phi3"), "olmo2": ("OLMo 2", "llama"),
}


def supported() -> str:
    """The supported families as a visitor reads them: "GPT-2 (gpt2), Llama (llama), ..."."""
    return ", ".join(f"{label} ({model_type})" for model_type, (label, _) in FAMILIES.items())


def family_of(hf_config: dict, name: str):
    """The converter module for a checkpoint's `model_type`, or UnsupportedModelError."""
    model_type = hf_config.get("model_type", "?")
    found = FAMILIES.get(model_type) if isinstance(model_type, str) else None
    if found is None:
        raise UnsupportedModelError(
            f"{name}: architecture {model_type!r} is not supported. Supported families: {supported()}. "
            "Pick a checkpoint of one of those."
        )
    return importlib.import_module(f"{__name__}.{found[1]}")


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


def split_rows(W: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    """A fused nn.Linear weight or bias [sum(sizes), ...] -> its parts along the output dimension."""
    return list(torch.split(W, sizes, dim=0))


def rope_of(hf: dict, name: str) -> tuple[float, float]:
    """(rotary base, fraction of each head rotated) from config.json's rope_parameters (transformers 5) or the
    older top-level keys; UnsupportedModelError for rotary scaling (only plain RoPE is implemented)."""
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        raise UnsupportedModelError(f"{name}: rotary scaling {rope_type!r} is not supported (only plain RoPE).")
    theta = rope.get("rope_theta", hf.get("rope_theta", hf.get("rotary_emb_base", 10_000.0)))
    fraction = rope.get("partial_rotary_factor", hf.get("partial_rotary_factor", hf.get("rotary_pct", 1.0)))
    return float(theta), float(fraction)


def windows_of(hf: dict, n_layers: int, max_tokens: int) -> tuple[int, ...]:
    """Each layer's sliding window from config.json (`sliding_window` with `layer_types`, or on every layer
    unless `use_sliding_window` is false); () when no layer has a window shorter than the context."""
    window = hf.get("sliding_window")
    if not window or hf.get("use_sliding_window", True) is False and not hf.get("layer_types"):
        return ()
    types = hf.get("layer_types") or ["sliding_attention"] * n_layers
    windows = tuple(int(window) if kind == "sliding_attention" and window < max_tokens else 0 for kind in types)
    return windows if any(windows) else ()


def linear_block(s: dict[str, torch.Tensor], prefix: str, layer: int, cfg: ModelConfig,
                 names: dict[str, str]) -> dict[str, torch.Tensor]:
    """One block in the uniform layout from nn.Linear / LayerNorm weights (biases taken where present).
    names: ours -> theirs under `prefix` (without `.weight`): W_Q, W_K, W_V, W_O, W_in, W_out, W_gate, ln1, ln2."""
    p, at = {}, f"blocks.{layer}."
    n = {"W_Q": cfg.n_heads, "W_K": cfg.n_kv_heads, "W_V": cfg.n_kv_heads}
    for ours, theirs in names.items():
        W, bias = s[f"{prefix}{theirs}.weight"], s.get(f"{prefix}{theirs}.bias")
        if ours in n:
            p[f"{at}attn.{ours}"] = heads_in(W, n[ours])
            if bias is not None:
                p[f"{at}attn.b_{ours[2:]}"] = bias.reshape(n[ours], -1)
        elif ours == "W_O":
            p[f"{at}attn.W_O"] = heads_out(W, cfg.n_heads)
            if bias is not None:
                p[f"{at}attn.b_O"] = bias
        elif ours.startswith("ln"):
            p[f"{at}{ours}.w"] = W
            if bias is not None:
                p[f"{at}{ours}.b"] = bias
        else:  # MLP: x @ W
            p[f"{at}mlp.{ours}"] = W.T
            if bias is not None:
                p[f"{at}mlp.b_{ours[2:]}"] = bias
    return p


def final(s: dict[str, torch.Tensor], ln: str, W_E: str, lm_head: str) -> dict[str, torch.Tensor]:
    """Final LayerNorm and unembedding (tied to W_E when the checkpoint has no separate head)."""
    p = {"embed.W_E": s[W_E], "ln_final.w": s[ln + ".weight"], "unembed.W_U": s.get(lm_head + ".weight", s[W_E]).T}
    if ln + ".bias" in s:
        p["ln_final.b"] = s[ln + ".bias"]
    if lm_head + ".bias" in s:
        p["unembed.b_U"] = s[lm_head + ".bias"]
    return p


ACTS = {"gelu": "gelu", "gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new", "gelu_fast": "gelu_new",
        "relu": "relu", "silu": "silu"}


def act_of(hf: dict, key: str, name: str, default: str = "gelu") -> str:
    act = hf.get(key) or default
    if act not in ACTS:
        raise UnsupportedModelError(f"{name}: activation {act!r} is not supported.")
    return ACTS[act]
