"""Tiny random-weight checkpoints of every decoder family, built from transformers' own config classes with the
family's features switched on (windows shorter than the text, soft-caps, partial rotary, biases, odd sizes) and
saved with save_pretrained: shared by the parity, generation, hub and app tests."""

from __future__ import annotations

from pathlib import Path

import torch
import transformers as T
from transformers import AutoTokenizer

from engine import loading

ROPE = {"rope_type": "default", "rope_theta": 500.0}
LLAMA_LIKE = {"hidden_size": 48, "intermediate_size": 80, "num_hidden_layers": 3, "num_attention_heads": 4,
              "num_key_value_heads": 2, "max_position_embeddings": 64, "tie_word_embeddings": False}

# family -> (config class, model class, config arguments, what the case switches on)
CASES = {
    "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM", {
        "hidden_size": 48, "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 80,
        "max_position_embeddings": 64, "rope_parameters": {**ROPE, "partial_rotary_factor": 0.5}}),
    "gpt_neox_sequential": ("GPTNeoXConfig", "GPTNeoXForCausalLM", {
        "hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 80,
        "max_position_embeddings": 64, "use_parallel_residual": False,
        "rope_parameters": {**ROPE, "partial_rotary_factor": 0.25}}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {
        **LLAMA_LIKE, "num_attention_heads": 6, "use_sliding_window": True, "sliding_window": 5,
        "max_window_layers": 1, "rope_parameters": ROPE}),
    "mistral": ("MistralConfig", "MistralForCausalLM", {**LLAMA_LIKE, "sliding_window": 5, "rope_parameters": ROPE}),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", {
        **LLAMA_LIKE, "num_key_value_heads": 1, "head_dim": 16, "tie_word_embeddings": True,
        "rope_parameters": ROPE}),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", {
        **LLAMA_LIKE, "head_dim": 16, "sliding_window": 4, "query_pre_attn_scalar": 24,
        "attn_logit_softcapping": 0.2, "final_logit_softcapping": 1.0, "tie_word_embeddings": True,
        "rope_parameters": ROPE}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {
        **LLAMA_LIKE, "head_dim": 16, "attention_bias": True, "rope_parameters": ROPE}),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {
        **LLAMA_LIKE, "sliding_window": 6, "pad_token_id": 0,
        "rope_parameters": {**ROPE, "partial_rotary_factor": 0.5}}),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM", {**LLAMA_LIKE, "pad_token_id": 0, "rope_parameters": ROPE}),
    "gemma3_text": ("Gemma3TextConfig", "Gemma3ForCausalLM", {
        **LLAMA_LIKE, "head_dim": 16, "sliding_window": 4, "query_pre_attn_scalar": 20, "tie_word_embeddings": True,
        "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
        "rope_parameters": {"sliding_attention": {"rope_type": "default", "rope_theta": 100.0},
                            "full_attention": {"rope_type": "default", "rope_theta": 5000.0}}}),
    "opt": ("OPTConfig", "OPTForCausalLM", {
        "hidden_size": 48, "num_hidden_layers": 3, "ffn_dim": 80, "max_position_embeddings": 64,
        "num_attention_heads": 4, "word_embed_proj_dim": 48}),
    "gpt_neo": ("GPTNeoConfig", "GPTNeoForCausalLM", {
        "hidden_size": 48, "num_layers": 3, "num_heads": 4, "intermediate_size": 80, "max_position_embeddings": 64,
        "window_size": 4, "attention_types": [[["global", "local"], 1], [["local"], 1]]}),
    "gptj": ("GPTJConfig", "GPTJForCausalLM", {
        "n_embd": 48, "n_layer": 3, "n_head": 4, "n_positions": 64, "rotary_dim": 6}),
}


def tokenizer():
    return AutoTokenizer.from_pretrained(loading.resolve("smollm2-135m", lambda f, m: None))


def build(case: str, folder: Path, seed: int = 0, shard: str | None = None):
    """Save a tiny random checkpoint of `case` (with SmolLM2's tokenizer) to folder; return the Hugging Face
    model reloaded from it with eager attention, in eval mode. shard: save_pretrained's max_shard_size."""
    config_class, model_class, kwargs = CASES[case]
    tok = tokenizer()
    torch.manual_seed(seed)
    config = getattr(T, config_class)(vocab_size=len(tok), bos_token_id=1, eos_token_id=2, **kwargs)
    hf = getattr(T, model_class)(config)
    with torch.no_grad():  # random weights are tiny; widen them so differences are not hidden by small magnitudes
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    hf.save_pretrained(folder, **({"max_shard_size": shard} if shard else {}))
    tok.save_pretrained(folder)
    return getattr(T, model_class).from_pretrained(folder, attn_implementation="eager").eval()
