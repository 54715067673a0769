"""Parameter counts: a loaded model's from its actual weights, or a GPT-style model's from its configuration."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields

import torch

from ..model import Model
from ..weights import Weights

CATEGORIES = ("embeddings", "attention", "MLPs", "norms", "unembedding")


def _tensors(obj) -> Iterator[torch.Tensor]:
    """Every tensor of a weights dataclass (norms included), in field order."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, torch.Tensor):
            yield value
        elif value is not None:
            yield from _tensors(value)


def categorised(w: Weights) -> Iterator[tuple[str, torch.Tensor]]:
    """(category, tensor) for every weight; the embeddings come first, so a tied W_U is met after W_E."""
    for t in (w.W_E, w.W_pos, w.W_type):
        if t is not None:
            yield "embeddings", t
    for block in w.blocks:
        yield from (("attention", t) for t in _tensors(block.attn))
        yield from (("MLPs", t) for t in _tensors(block.mlp))
        norms = (block.ln1, block.ln2, block.ln1_post, block.ln2_post)
        yield from (("norms", t) for norm in norms if norm is not None for t in _tensors(norm))
    for norm in (w.embed_ln, w.ln_final, w.unembed.ln if w.unembed else None):
        if norm is not None:
            yield from (("norms", t) for t in _tensors(norm))
    if w.unembed is not None:
        for t in (w.unembed.W_U, w.unembed.b_U, w.unembed.W_dense, w.unembed.b_dense):
            if t is not None:
                yield "unembedding", t


def param_categories(model: Model) -> dict[str, int]:
    """Parameters per category, counted from the actual weights with each tied tensor once (in `embeddings`,
    so a tied unembedding counts 0). The values sum to `model.n_params()`."""
    seen: set[tuple[int, int]] = set()
    out = dict.fromkeys(CATEGORIES, 0)
    for category, t in categorised(model._weights):
        storage = (t.untyped_storage().data_ptr(), t.storage_offset())
        if storage not in seen:
            seen.add(storage)
            out[category] += t.numel()
    return out


@dataclass(frozen=True)
class EmbeddingRows:
    """How many rows each embedding table has (None: the model has no such table)."""

    tokens: int
    positions: int | None
    token_types: int | None


def embedding_rows(model: Model) -> EmbeddingRows:
    w = model._weights
    return EmbeddingRows(tokens=w.W_E.shape[0], positions=None if w.W_pos is None else w.W_pos.shape[0],
                         token_types=None if w.W_type is None else w.W_type.shape[0])


@dataclass(frozen=True)
class AttentionCounts:
    """Attention parameters of a loaded model, from its weights."""

    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_model: int
    d_head: int
    per_matrix: dict[str, int]  # one head's W_Q, W_K, W_V (value down), W_O (value up)
    per_head: int  # W_Q + W_O of the head + its share of the (possibly shared) W_K and W_V
    per_head_unshared: int  # four full matrices, as if no key/value sharing
    biases_per_block: int  # b_Q, b_K, b_V, b_O of one block
    per_block: tuple[int, ...]  # every attention weight and bias of each block
    all_attention: int

    @property
    def kv_group(self) -> int:
        return self.n_heads // self.n_kv_heads


def attention_counts(model: Model) -> AttentionCounts:
    """Per matrix, per head, per block and in all attention, from the model's actual weights."""
    cfg = model.config
    first = model._weights.blocks[0].attn
    per_matrix = {name: int(getattr(first, name)[0].numel()) for name in ("W_Q", "W_K", "W_V", "W_O")}
    per_head = per_matrix["W_Q"] + per_matrix["W_O"] + (per_matrix["W_K"] + per_matrix["W_V"]) // cfg.kv_group
    per_block = tuple(sum(int(t.numel()) for t in _tensors(block.attn)) for block in model._weights.blocks)
    biases = sum(int(t.numel()) for t in (first.b_Q, first.b_K, first.b_V, first.b_O) if t is not None)
    return AttentionCounts(n_layers=cfg.n_layers, n_heads=cfg.n_heads, n_kv_heads=cfg.n_kv_heads,
                           d_model=cfg.d_model, d_head=cfg.d_head, per_matrix=per_matrix, per_head=per_head,
                           per_head_unshared=sum(per_matrix.values()), biases_per_block=biases,
                           per_block=per_block, all_attention=sum(per_block))


@dataclass(frozen=True)
class ConfigCounts:
    """Weights of a GPT-style model from its configuration alone, as the notes count them (no biases)."""

    d_model: int
    d_head: int
    n_heads: int
    n_layers: int
    d_vocab: int
    n_ctx: int

    @property
    def per_matrix(self) -> int:
        return self.d_model * self.d_head  # one W_Q, W_K, value-down or value-up map

    @property
    def per_head(self) -> int:
        return 4 * self.per_matrix

    @property
    def per_block(self) -> int:
        return self.n_heads * self.per_head

    @property
    def all_attention(self) -> int:
        return self.n_layers * self.per_block

    @property
    def mlps(self) -> int:
        return self.n_layers * 2 * self.d_model * 4 * self.d_model  # up and down, d_mlp = 4 d_model

    @property
    def embeddings(self) -> int:
        return (self.d_vocab + self.n_ctx) * self.d_model  # tokens and positions; unembedding tied

    @property
    def total_estimate(self) -> int:
        return self.all_attention + self.mlps + self.embeddings
