"""Typed, frozen weights in the uniform layout: one `Weights` per model, one `BlockWeights` per layer.

The converters (`engine.convert`) produce a flat dict with TransformerLens's names; `Weights.from_uniform` is
the one place those strings are read. Everything after it refers to fields (`weights.blocks[3].attn.W_Q`).
The dataclasses are frozen (no field can be reassigned); outside the engine they are read through
`WeightsView`, which hands out copies, so no caller can change the weights that every session shares.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields

import torch

Tensor = torch.Tensor


@dataclass(frozen=True)
class NormWeights:
    w: Tensor  # [d]
    b: Tensor | None = None  # [d]; LayerNorm only


@dataclass(frozen=True)
class AttentionWeights:
    W_Q: Tensor  # [n_heads, d_model, d_head]
    W_K: Tensor  # [n_kv_heads, d_model, d_head]
    W_V: Tensor  # [n_kv_heads, d_model, d_head]  "value down"
    W_O: Tensor  # [n_heads, d_head, d_model]     "value up"
    b_Q: Tensor | None = None  # [n_heads, d_head]
    b_K: Tensor | None = None  # [n_kv_heads, d_head]
    b_V: Tensor | None = None  # [n_kv_heads, d_head]
    b_O: Tensor | None = None  # [d_model]
    q_norm: NormWeights | None = None  # RMSNorm of q, k: [d_head] per head, or [n_heads, 1, d_head] over all heads
    k_norm: NormWeights | None = None


@dataclass(frozen=True)
class MLPWeights:
    W_in: Tensor  # [d_model, d_mlp]
    W_out: Tensor  # [d_mlp, d_model]
    W_gate: Tensor | None = None  # [d_model, d_mlp]; SwiGLU only
    b_in: Tensor | None = None
    b_out: Tensor | None = None
    b_gate: Tensor | None = None


@dataclass(frozen=True)
class BlockWeights:
    ln1: NormWeights | None  # before attention (pre-norm) or after its sum (post-norm); None: OLMo 2
    attn: AttentionWeights
    ln2: NormWeights | None  # before the MLP (pre-norm) or after its sum (post-norm); None: OLMo 2
    mlp: MLPWeights
    ln1_post: NormWeights | None = None  # on the attention's output before it is added (Gemma 2/3, OLMo 2)
    ln2_post: NormWeights | None = None  # on the MLP's output before it is added (Gemma 2/3, OLMo 2)


@dataclass(frozen=True)
class UnembedWeights:
    W_U: Tensor  # [d_model, d_vocab]
    b_U: Tensor | None = None  # [d_vocab]
    W_dense: Tensor | None = None  # BERT's MLM transform: dense + act + LayerNorm before W_U
    b_dense: Tensor | None = None
    ln: NormWeights | None = None


@dataclass(frozen=True)
class Weights:
    W_E: Tensor  # [d_vocab, d_model]
    blocks: tuple[BlockWeights, ...]
    W_pos: Tensor | None = None  # [n_ctx, d_model], learned positions
    W_type: Tensor | None = None  # [n_token_types, d_model], BERT's segments
    embed_ln: NormWeights | None = None  # BERT's LayerNorm after the embedding
    ln_final: NormWeights | None = None
    unembed: UnembedWeights | None = None  # None: an encoder without a language-model head

    @classmethod
    def from_uniform(cls, p: dict[str, Tensor], n_layers: int) -> Weights:
        """Build from the converters' flat dict of TransformerLens names (the converter boundary)."""

        def norm(prefix: str) -> NormWeights | None:
            return NormWeights(p[f"{prefix}.w"], p.get(f"{prefix}.b")) if f"{prefix}.w" in p else None

        def pick(prefix: str, names: tuple[str, ...]) -> dict[str, Tensor | None]:
            return {name: p.get(f"{prefix}.{name}") for name in names}

        def attention(prefix: str) -> AttentionWeights:
            found = pick(prefix, tuple(f.name for f in fields(AttentionWeights) if not f.name.endswith("_norm")))
            for name in ("W_Q", "W_K", "W_V"):
                found[name] = _heads_as_columns(found[name])
            return AttentionWeights(**found, q_norm=norm(f"{prefix}.q_norm"), k_norm=norm(f"{prefix}.k_norm"))

        blocks = tuple(
            BlockWeights(
                ln1=norm(f"blocks.{layer}.ln1"), ln2=norm(f"blocks.{layer}.ln2"),
                ln1_post=norm(f"blocks.{layer}.ln1_post"), ln2_post=norm(f"blocks.{layer}.ln2_post"),
                attn=attention(f"blocks.{layer}.attn"),
                mlp=MLPWeights(**pick(f"blocks.{layer}.mlp", tuple(f.name for f in fields(MLPWeights)))),
            )
            for layer in range(n_layers)
        )
        unembed = None
        if "unembed.W_U" in p:
            unembed = UnembedWeights(W_U=p["unembed.W_U"], b_U=p.get("unembed.b_U"), W_dense=p.get("unembed.W_dense"),
                                     b_dense=p.get("unembed.b_dense"), ln=norm("unembed_ln"))
        return cls(W_E=p["embed.W_E"], blocks=blocks, W_pos=p.get("pos_embed.W_pos"),
                   W_type=p.get("token_type_embed.W_type"), embed_ln=norm("embed_ln"), ln_final=norm("ln_final"),
                   unembed=unembed)

    def named(self) -> Iterator[tuple[str, Tensor]]:
        """(TransformerLens name, tensor) for every weight, e.g. ("blocks.3.attn.W_Q", ...)."""
        yield from _named(self, "")

    def map(self, fn: Callable[[Tensor], Tensor]) -> Weights:
        """The same structure with `fn` applied to every tensor; a tied W_U (a view of W_E) stays tied."""
        return _map(self, fn, {})

    @property
    def tied_unembedding(self) -> bool:
        """True when W_U is W_E transposed, sharing its memory (GPT-2, SmolLM2)."""
        return self.unembed is not None and _same_storage(self.unembed.W_U, self.W_E)


def _heads_as_columns(W: Tensor) -> Tensor:
    """W [h, d_model, d_head] with the memory of a [d_model, h·d_head] matrix (a view with the same values):
    projecting all heads at once is then one matmul without copying the weight."""
    h, d_model, d_head = W.shape
    return W.permute(1, 0, 2).reshape(d_model, h * d_head).contiguous().view(d_model, h, d_head).permute(1, 0, 2)


_TL_NAMES = {"W_E": "embed.W_E", "W_pos": "pos_embed.W_pos", "W_type": "token_type_embed.W_type"}


def _named(obj, prefix: str) -> Iterator[tuple[str, Tensor]]:
    for f in fields(obj):
        value = getattr(obj, f.name)
        if value is None:
            continue
        if isinstance(value, Tensor):
            name = _TL_NAMES.get(f.name) if not prefix else None
            yield name or f"{prefix}{f.name}", value
        elif isinstance(value, tuple):
            for i, block in enumerate(value):
                yield from _named(block, f"{f.name}.{i}.")
        else:
            yield from _named(value, f"{prefix}{f.name}.")


def _same_storage(a: Tensor, b: Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def _view_key(t: Tensor, transposed: bool = False) -> tuple:
    shape, stride = tuple(t.shape), tuple(t.stride())
    if transposed:
        shape, stride = shape[::-1], stride[::-1]
    return t.untyped_storage().data_ptr(), t.storage_offset(), shape, stride


def _map(obj, fn: Callable[[Tensor], Tensor], done: dict[tuple, Tensor]):
    """Apply fn once per distinct view; a 2-D view that is the transpose of one already mapped stays its transpose."""
    values = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, Tensor):
            key = _view_key(value)
            if key not in done and value.ndim == 2 and _view_key(value, transposed=True) in done:
                values[f.name] = done[_view_key(value, transposed=True)].T  # tied unembedding: W_U = W_E.T
                continue
            if key not in done:
                done[key] = fn(value)
            values[f.name] = done[key]
        elif isinstance(value, tuple):
            values[f.name] = tuple(_map(v, fn, done) for v in value)
        elif value is not None:
            values[f.name] = _map(value, fn, done)
        else:
            values[f.name] = None
    return type(obj)(**values)


class WeightsView:
    """Read access to shared weights for callers outside the engine: every tensor read is a copy.

    `model.weights.blocks[3].attn.W_Q` reads like the weights themselves, but an in-place operation on what it
    returns cannot reach the model that every session shares (PyTorch has no read-only tensors: even an
    inference tensor is written before the error is raised)."""

    __slots__ = ("_obj",)

    def __init__(self, obj):
        object.__setattr__(self, "_obj", obj)

    def __getattr__(self, name: str):
        return _copy_out(getattr(self._obj, name))

    def __setattr__(self, name: str, value) -> None:
        raise AttributeError(f"weights are read-only: cannot set {name!r}")

    def __repr__(self) -> str:
        return f"WeightsView({type(self._obj).__name__})"

    def named(self) -> Iterator[tuple[str, Tensor]]:
        """(TransformerLens name, a copy of the tensor) for every weight."""
        return ((name, t.clone()) for name, t in _named(self._obj, ""))


def _copy_out(value):
    if isinstance(value, Tensor):
        return value.clone()
    if isinstance(value, tuple):
        return tuple(_copy_out(v) for v in value)
    if hasattr(value, "__dataclass_fields__"):
        return WeightsView(value)
    return value
