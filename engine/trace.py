"""Trace: every intermediate of one forward pass, by (name, layer).

What is O(n·d) or the pattern itself is stored; `scores`, `head_out` and the repeated `k`/`v` are
computed on access from what is stored, so a long text does not hold n_heads × n × d_model per layer.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import torch

from .config import ModelConfig

STORED = ("resid_pre", "q", "k_kv", "v_kv", "pattern", "z", "attn_out", "resid_mid", "mlp_out", "resid_post")
_uids = itertools.count(1)
NAMES = ("resid_pre", "q", "k", "v", "scores", "pattern", "z", "head_out", "attn_out",
         "resid_mid", "mlp_out", "resid_post")


@dataclass
class Trace:
    """The record of one run. Index it as `trace["pattern", layer]`; shapes are in DESIGN.md."""

    config: ModelConfig
    tokens: list[str]  # readable token strings, specials included
    token_ids: list[int]  # what the model saw
    logits: torch.Tensor | None  # [n_tokens, d_vocab]; None for an encoder without an LM head
    resid_final: torch.Tensor  # [n_tokens, d_model] after the final norm (last hidden state)
    causal: bool  # the mask this run used
    head_mask: torch.Tensor  # bool [n_layers, n_heads]; False = switched off
    truncated: bool  # True when the text was cut to fit the model's context
    n_tokens_in_text: int  # how many tokens the whole text had before cutting
    store: dict[tuple[str, int], torch.Tensor] = field(repr=False)
    W_O: list[torch.Tensor] = field(repr=False)  # per layer [n_heads, d_head, d_model], to make head_out
    b_O: list[torch.Tensor | None] = field(repr=False)
    uid: int = field(default_factory=lambda: next(_uids))  # unique per run, for caches of derived views

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def pattern_dtype(self) -> torch.dtype:
        return self.store["pattern", 0].dtype

    @property
    def patterns_reduced(self) -> bool:
        """True when patterns were kept as float16 to bound memory (long texts)."""
        return self.pattern_dtype != torch.float32

    def __getitem__(self, key: tuple[str, int] | tuple[str, int, int]) -> torch.Tensor:
        """trace[name, layer] for all heads, or trace[name, layer, head] for one (computing only that head)."""
        if len(key) == 3:
            return self._one_head(*key)
        name, layer = key
        if not 0 <= layer < self.config.n_layers:
            raise IndexError(f"layer {layer} out of range 0..{self.config.n_layers - 1}")
        if name in ("k", "v"):
            kv = self.store[f"{name}_kv", layer]  # [n_kv_heads, n, d_head]
            return kv.repeat_interleave(self.config.kv_group, dim=0)  # [n_heads, n, d_head]
        if name == "scores":
            q, k = self.store["q", layer], self["k", layer]
            return q @ k.transpose(-1, -2) / math.sqrt(self.config.d_head)  # [n_heads, n, n]
        if name == "pattern":
            return self.store["pattern", layer].float()  # [n_heads, n, n]
        if name == "head_out":
            z = self.store["z", layer]  # [n_heads, n, d_head]
            return torch.einsum("hne,hed->hnd", z, self.W_O[layer])  # [n_heads, n, d_model]
        if (name, layer) in self.store:
            return self.store[name, layer]
        raise KeyError(f"unknown trace name {name!r}; known: {', '.join(NAMES)}")

    def _one_head(self, name: str, layer: int, head: int) -> torch.Tensor:
        if not 0 <= head < self.config.n_heads:
            raise IndexError(f"head {head} out of range 0..{self.config.n_heads - 1}")
        if name in ("k", "v", "scores"):
            kv_head = head // self.config.kv_group  # the key/value head this query head shares
            if name != "scores":
                return self.store[f"{name}_kv", layer][kv_head]  # [n, d_head]
            q, k = self.store["q", layer][head], self.store["k_kv", layer][kv_head]  # [n, d_head]
            return q @ k.T / math.sqrt(self.config.d_head)  # [n, n]
        if name == "head_out":
            return self.store["z", layer][head] @ self.W_O[layer][head]  # [n, d_model]
        if name in ("q", "z", "pattern"):
            return self.store[name, layer][head].float()
        raise KeyError(f"{name!r} has no per-head entry; per-head names: q, k, v, scores, pattern, z, head_out")

    def masked(self) -> torch.Tensor:
        """bool [n, n]: True where a query (row) may not see a key (column) in this run."""
        n = self.n_tokens
        device = self.store["q", 0].device
        if not self.causal:
            return torch.zeros(n, n, dtype=torch.bool, device=device)
        return torch.ones(n, n, dtype=torch.bool, device=device).triu(1)

    def all_patterns(self) -> torch.Tensor:
        """[n_layers, n_heads, n, n] in the stored dtype (float16 for long texts)."""
        return torch.stack([self.store["pattern", layer] for layer in range(self.config.n_layers)])

    def nbytes(self) -> int:
        """Memory held by the stored tensors."""
        tensors = [*self.store.values(), self.resid_final] + ([self.logits] if self.logits is not None else [])
        return sum(t.numel() * t.element_size() for t in tensors)
