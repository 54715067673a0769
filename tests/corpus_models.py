"""Tiny random-weight models for the corpus tests, saved with save_pretrained (a Llama with shared key/value heads
and rotary positions; a BERT encoder, bidirectional)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertModel, LlamaConfig, LlamaForCausalLM

from engine import loading


def save_tiny(kind: str, folder: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    source = loading.resolve("minilm-l6" if kind == "bert" else "smollm2-135m", lambda f, m: None)
    tokenizer = AutoTokenizer.from_pretrained(source)
    vocab = len(tokenizer)
    if kind == "llama":
        hf = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                                          num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=128,
                                          rope_theta=500.0, tie_word_embeddings=False))
    else:
        hf = BertModel(BertConfig(vocab_size=vocab, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                                  intermediate_size=128, max_position_embeddings=128), add_pooling_layer=False)
    with torch.no_grad():  # random weights are tiny: widen them so that the patterns are not all uniform
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    hf.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
