"""Trace: every intermediate of one forward pass, by (name, layer), read-only.

Stored per layer: `resid_pre`, `q`, the shared key/value heads `k`, `v` (after rotary), `z` (pattern @ v),
`attn_out`, `mlp_out` (and `resid_mid` for post-norm models, where it is not a plain sum); O(n · d) each.
Computed on access: `pattern` and `scores` (from q and k, exactly as the explicit attention does), `head_out`
(z @ W_O), the repeated `k`, `v`, `resid_mid = resid_pre + attn_out` and `resid_post` (the next layer's
`resid_pre`), and the logits. A long text therefore holds no n × n tensor and no n × d_vocab tensor.

What the names mean in families that differ (config fields): `scores` are the model's own (scaled by
`attn_scale`, soft-capped by `attn_softcap`) before the causal mask and window; `pattern` is 0 outside a layer's
window (`masked(rows, layer)`); `q`, `k` are after q/k norms and rotary. `attn_out` and `mlp_out` are what is
added to the residual stream: after the output norms of Gemma 2/3 and OLMo 2 (so the heads' `head_out` sum to
attn_out before that norm only). In a parallel block (GPT-NeoX, GPT-J) the MLP reads `resid_pre`, not
`resid_mid`, which is then only the partial sum resid_pre + attn_out.

A trace is read-only: it is a frozen dataclass, its stores are mapping proxies, and everything it hands out
is a new tensor (a copy or a computation), so no caller can write into a trace that other sessions share.

A lean run (`lean=True`) stores `resid_pre` alone and recomputes the rest of a layer's record when it is read
(engine/lean.py): the same numbers, for d_model floats per token and layer. A run with `keep=("pattern",)` (for a
notebook that reads every pattern) is lean, computes attention explicitly and hands each layer's pattern from that
pass to the first `trace["pattern", layer]` (or `patterns()`) that asks: given away, not copied, and no longer held
by the trace, whose later reads compute it again (the same numbers).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import torch

from .config import ModelConfig
from .lean import LeanLayer, Recipe, held
from .transformer import Patch, Record, explicit_pattern, hidden_keys, scaled_scores, unembed
from .weights import Weights, WeightsView

NAMES = ("resid_pre", "q", "k", "v", "scores", "pattern", "z", "head_out", "attn_out",
         "resid_mid", "mlp_out", "resid_post")
PER_HEAD = ("q", "k", "v", "scores", "pattern", "z", "head_out")
_uids = itertools.count(1)


def freeze_patch(patch: Patch) -> Mapping[int, Mapping[int, Mapping[int, torch.Tensor]]]:
    """A read-only copy of a patch {layer: {head: {position: z}}} (the vectors copied too)."""
    return MappingProxyType({layer: MappingProxyType({head: MappingProxyType({pos: z.clone() for pos, z in at.items()})
                                                      for head, at in heads.items()})
                             for layer, heads in patch.items()})


@dataclass(frozen=True, eq=False, repr=False)
class Prefix:
    """The first layers of a run that was stopped before its end: a later run of the same tokens and settings
    resumes from it (`model.run(..., reuse=prefix)`) instead of computing them again."""

    config: ModelConfig
    _weights: Weights
    token_ids: tuple[int, ...]
    causal: bool
    attention: str
    head_mask_: torch.Tensor
    patch: Mapping
    layers: tuple[Mapping[str, torch.Tensor], ...]  # layers 0 .. k-1
    resid_next: torch.Tensor  # resid_pre of layer k
    lean: bool = False  # the layers hold resid_pre only (a lean run's)

    def resid_pre_at(self, layer: int) -> torch.Tensor:
        return self.resid_next if layer == len(self.layers) else self.layers[layer]["resid_pre"]

    def nbytes(self) -> int:
        tensors = [t for stored in self.layers for t in held(stored).values()] + [self.resid_next]
        return sum(t.untyped_storage().nbytes() for t in {t.untyped_storage().data_ptr(): t for t in tensors}.values())


@dataclass(frozen=True, eq=False, repr=False)
class Trace:
    """The record of one run. Index it as `trace["pattern", layer]` or `trace["pattern", layer, head]`;
    shapes are in DESIGN.md. Build one with `Trace.build`."""

    config: ModelConfig
    _weights: Weights  # the model's weights (shared, never handed out): W_O for head_out, W_U for logits
    tokens: tuple[str, ...]  # readable token strings, specials included
    token_ids: tuple[int, ...]  # what the model saw
    causal: bool  # the mask this run used
    truncated: bool  # True when the text was cut to fit the context or the operator's limit
    n_tokens_in_text: int  # how many tokens the whole text had before cutting
    layers: tuple[Mapping[str, torch.Tensor], ...] = field(repr=False)  # per layer, read-only
    resid_last: torch.Tensor = field(repr=False)  # [n, d_model], resid_post of the last layer
    resid_final_: torch.Tensor = field(repr=False)  # [n, d_model], after the final norm
    head_mask_: torch.Tensor = field(repr=False)  # bool [n_layers, n_heads]
    patch: Mapping = field(default_factory=lambda: MappingProxyType({}), repr=False)  # {layer: {head: {pos: z}}}
    attention: str = "fused"  # the attention path that computed z: "fused" or "explicit"
    lean: bool = False  # the layers hold resid_pre only and compute the rest on access (engine/lean.py)
    uid: int = field(default_factory=lambda: next(_uids))  # unique per run, for caches of derived views
    # patterns from the forward pass (keep=("pattern",)), each handed to its first reader and then dropped
    kept_patterns_: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, *, config: ModelConfig, weights: Weights, tokens: Sequence[str], token_ids: Sequence[int],
              causal: bool, head_mask: torch.Tensor, records: Sequence[Record], resid_last: torch.Tensor,
              resid_final: torch.Tensor, patch: Patch | None = None, attention: str = "fused",
              truncated: bool = False, n_tokens_in_text: int | None = None, lean: bool = False) -> Trace:
        """records: per layer, what the forward pass recorded (or a reused trace's layers); lean: keep only
        each layer's resid_pre (and the patterns the records carry) and recompute the rest on access."""
        records = [held(r) for r in records]
        head_mask_, patch_ = head_mask.clone().cpu(), freeze_patch(patch or {})
        if lean:
            recipe = Recipe(config, weights, len(token_ids), bool(causal), head_mask_, patch_, attention,
                            resid_last.device, resid_last.dtype)
            layers = tuple(LeanLayer(recipe, i, {"resid_pre": r["resid_pre"]}) for i, r in enumerate(records))
        else:
            layers = tuple(MappingProxyType({k: t for k, t in r.items() if k != "pattern"}) for r in records)
        return cls(config=config, _weights=weights, tokens=tuple(tokens), token_ids=tuple(int(i) for i in token_ids),
                   causal=bool(causal), truncated=truncated, n_tokens_in_text=n_tokens_in_text or len(token_ids),
                   layers=layers, resid_last=resid_last, resid_final_=resid_final, head_mask_=head_mask_,
                   patch=patch_, attention=attention, lean=lean,
                   kept_patterns_={layer: r["pattern"] for layer, r in enumerate(records) if "pattern" in r})

    def __repr__(self) -> str:
        lean = ", lean" if self.lean else ""
        return f"Trace({self.config.name}, {self.n_tokens} tokens, causal={self.causal}{lean}, uid={self.uid})"

    # ---- small facts -------------------------------------------------------------------------------------

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def head_mask(self) -> torch.Tensor:
        """bool [n_layers, n_heads], False = switched off (a copy)."""
        return self.head_mask_.clone()

    @property
    def weights(self) -> WeightsView:
        """The model's weights, read-only (each tensor read is a copy)."""
        return WeightsView(self._weights)

    @property
    def device(self) -> torch.device:
        return self.resid_last.device

    @property
    def resid_final(self) -> torch.Tensor:
        """[n, d_model]: the last hidden state, after the final norm."""
        return self.resid_final_.clone()

    @property
    def logits(self) -> torch.Tensor | None:
        """[n_tokens, d_vocab], computed on access; None for an encoder without an LM head. For one position
        of a long text use `logits_at` (all positions of 8,192 tokens are 1.6 GB for SmolLM2)."""
        return self.logits_at(slice(None))

    def logits_at(self, positions: int | slice | Sequence[int]) -> torch.Tensor | None:
        """Logits at some positions: [d_vocab] for an int, [m, d_vocab] otherwise; None without an LM head."""
        if self._weights.unembed is None:
            return None
        with torch.no_grad():
            return unembed(self.resid_final_[positions], self._weights, self.config).float()

    def masked(self, rows: slice = slice(None), layer: int | None = None) -> torch.Tensor:
        """bool [r, n]: True where a query (row) may not see a key (column) in this run (all rows by default);
        with a layer, also the keys outside that layer's sliding window (config.windows)."""
        n = self.n_tokens
        start, stop, _ = rows.indices(n)
        window = self.config.window(layer) if layer is not None else 0
        hidden = hidden_keys(stop - start, n, start, self.causal, window, self.device)
        return torch.zeros(stop - start, n, dtype=torch.bool, device=self.device) if hidden is None else hidden

    # ---- tensors by name ---------------------------------------------------------------------------------

    def __getitem__(self, key: tuple[str, int] | tuple[str, int, int]) -> torch.Tensor:
        """trace[name, layer] for all heads, or trace[name, layer, head] for one (computing only that head)."""
        if len(key) == 3:
            name, layer, head = key
            self._check(layer, head)
            if name not in PER_HEAD:
                raise KeyError(f"{name!r} has no per-head entry; per-head names: {', '.join(PER_HEAD)}")
            return self._heads(name, layer, slice(head, head + 1))[0]
        name, layer = key
        self._check(layer)
        if name in PER_HEAD:
            return self._heads(name, layer, slice(None))
        stored = self.layers[layer]
        if name in ("resid_pre", "attn_out", "mlp_out"):
            return stored[name].clone()
        if name == "resid_mid":
            return stored["resid_mid"].clone() if "resid_mid" in stored else stored["resid_pre"] + stored["attn_out"]
        if name == "resid_post":
            last = layer == self.config.n_layers - 1
            return (self.resid_last if last else self.layers[layer + 1]["resid_pre"]).clone()
        raise KeyError(f"unknown trace name {name!r}; known: {', '.join(NAMES)}")

    def patterns(self, layers: Sequence[int] | None = None) -> tuple[torch.Tensor, ...]:
        """Every layer's pattern (or those of `layers`), each [n_heads, n, n], exactly trace["pattern", layer]:
        what a notebook reads after a run, like Hugging Face's `attentions`. Each is computed when asked for
        (one allocation, no copy) and belongs to the caller. All 30 layers of SmolLM2 at 2,048 tokens are 4.5 GB:
        for long texts read a layer at a time (or `pattern_rows`)."""
        return tuple(self["pattern", layer] for layer in self._layers(layers))

    def scores(self, layers: Sequence[int] | None = None) -> tuple[torch.Tensor, ...]:
        """Every layer's scores (or those of `layers`), each [n_heads, n, n], exactly trace["scores", layer]."""
        return tuple(self["scores", layer] for layer in self._layers(layers))

    def kv_heads(self, name: str, layer: int) -> torch.Tensor:
        """The stored key or value heads, [n_kv_heads, n, d_head], before repeating for the query heads."""
        self._check(layer)
        if name not in ("k", "v"):
            raise KeyError(f"kv_heads takes 'k' or 'v', not {name!r}")
        return self.layers[layer][f"{name}_kv"].clone()

    def pattern_rows(self, layer: int, rows: slice, head: int | None = None) -> torch.Tensor:
        """The pattern of a block of query rows: [n_heads, r, n] (or [r, n] for one head), exactly the rows of
        trace["pattern", layer]. Views of long texts read a layer a block at a time with it."""
        q, k = self._rows_qk(layer, rows, head)
        out = explicit_pattern(q, k, self.causal, query_offset=rows.start or 0, **self._attention(layer))
        return out if head is None else out[0]

    def scores_rows(self, layer: int, rows: slice, head: int | None = None) -> torch.Tensor:
        """The model's scores for a block of query rows, before masking: q·k scaled (1/√d_head unless
        config.attn_scale) and soft-capped (config.attn_softcap): [n_heads, r, n] (or [r, n] for one head)."""
        q, k = self._rows_qk(layer, rows, head)
        out = scaled_scores(q, k, scale=self.config.attn_scale, softcap=self.config.attn_softcap)
        return out if head is None else out[0]

    def _rows_qk(self, layer: int, rows: slice, head: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(layer, head)
        heads = slice(None) if head is None else slice(head, head + 1)
        return self.layers[layer]["q"][heads, rows], self._repeated("k", layer, heads)  # [h, r, d], [h, n, d]

    def row_blocks(self, n_heads: int = 1, max_bytes: int = 32 << 20) -> Iterator[slice]:
        """Slices of query rows that keep a block of n_heads patterns under max_bytes (float32)."""
        n = self.n_tokens
        size = max(1, min(n, max_bytes // (4 * n * n_heads)))
        return (slice(start, min(start + size, n)) for start in range(0, n, size))

    def resid_pre_at(self, layer: int) -> torch.Tensor:
        """The stored resid_pre of a layer (no copy): where a run that reuses this one resumes."""
        return self.layers[layer]["resid_pre"]

    def residual_stream(self) -> torch.Tensor:
        """[n_layers + 1, n, d_model]: the embedding (resid_pre of block 0), then the output of each block."""
        return torch.stack([r["resid_pre"] for r in self.layers] + [self.resid_last]).float()

    def nbytes(self) -> int:
        """Memory held by the tensors this trace stores (each storage once)."""
        return sum(nbytes for _, nbytes in self.storages())

    def storages(self) -> Iterator[tuple[int, int]]:
        """(storage id, bytes) of every distinct tensor storage the trace holds; reused layers share them."""
        seen = set()
        tensors = [t for stored in self.layers for t in held(stored).values()] + [self.resid_last, self.resid_final_]
        for t in tensors + list(self.kept_patterns_.values()):
            key = t.untyped_storage().data_ptr()
            if key not in seen:
                seen.add(key)
                yield key, t.untyped_storage().nbytes()

    # ---- internals ---------------------------------------------------------------------------------------

    def _check(self, layer: int, head: int | None = None) -> None:
        if not isinstance(layer, int) or not 0 <= layer < self.config.n_layers:
            raise IndexError(f"layer {layer} out of range 0..{self.config.n_layers - 1}")
        if head is not None and not (isinstance(head, int) and 0 <= head < self.config.n_heads):
            raise IndexError(f"head {head} out of range 0..{self.config.n_heads - 1}")

    def _attention(self, layer: int) -> dict:
        """What the model's attention in a layer applies to q·k besides the causal mask."""
        cfg = self.config
        return {"scale": cfg.attn_scale, "window": cfg.window(layer), "softcap": cfg.attn_softcap}

    def _layers(self, layers: Sequence[int] | None) -> list[int]:
        layers = range(self.config.n_layers) if layers is None else list(layers)
        for layer in layers:
            self._check(layer)
        return list(layers)

    def _repeated(self, name: str, layer: int, heads: slice) -> torch.Tensor:
        """k or v for the query heads in `heads`: [h, n, d_head] (each kv head repeated for its group)."""
        group = self.config.kv_group
        index = torch.arange(self.config.n_heads)[heads] // group
        return self.layers[layer][f"{name}_kv"][index.to(self.device)]

    def _heads(self, name: str, layer: int, heads: slice) -> torch.Tensor:
        stored = self.layers[layer]
        if name in ("q", "z"):
            return stored[name][heads].clone()
        if name in ("k", "v"):
            return self._repeated(name, layer, heads)
        if name == "scores":
            k = self._repeated("k", layer, heads)
            return scaled_scores(stored["q"][heads], k, scale=self.config.attn_scale,
                                 softcap=self.config.attn_softcap)  # [h, n, n]
        if name == "pattern":
            if heads == slice(None) and (kept := self.kept_patterns_.pop(layer, None)) is not None:
                return kept  # computed by the forward pass, given away: the trace no longer holds it
            return explicit_pattern(stored["q"][heads], self._repeated("k", layer, heads), self.causal,
                                    **self._attention(layer))
        # head_out: what each head adds to the residual stream, z @ W_O[h]
        W_O = self._weights.blocks[layer].attn.W_O[heads]  # [h, d_head, d_model]
        return torch.einsum("hne,hed->hnd", stored["z"][heads], W_O)  # [h, n, d_model]
