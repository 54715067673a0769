"""The layers of a lean trace (`model.run(..., lean=True)`): each holds its `resid_pre` only and recomputes the rest
of what a Trace stores (`q`, `k_kv`, `v_kv`, `z`, `attn_out`, `mlp_out`, and `resid_mid` after a post-norm block)
when it is read, by running the block again from that `resid_pre` with the run's own settings (mask, head
switches, patch, attention path). The same operations on the same input: the numbers are those the run computed,
bit for bit. A lean trace holds d_model floats per token and layer, as Hugging Face's hidden states do, instead
of the full record's (3,264 for SmolLM2).

Reading q, k_kv or v_kv costs the layer's norm and projections only; the other names cost the block. The last
layer recomputed is kept (one layer's record), so reading several names of one layer computes it once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from types import MappingProxyType

import torch

from .config import ModelConfig
from .transformer import Patch, Record, Rope, block, block_qkv, layer_ropes
from .weights import Weights

QKV = ("q", "k_kv", "v_kv")


class Recipe:
    """How one run computed its blocks: what a lean layer needs to compute its record again."""

    def __init__(self, config: ModelConfig, weights: Weights, n_tokens: int, causal: bool, head_mask: torch.Tensor,
                 patch: Patch, attention: str, device: torch.device, dtype: torch.dtype):
        self.config, self.weights, self.causal, self.attention = config, weights, causal, attention
        self.n_tokens, self.device = n_tokens, device
        self.patch = patch  # read-only {layer: {head: {position: z}}}
        self.heads_on = head_mask.to(device=device, dtype=dtype)  # [n_layers, n_heads]
        names = ("resid_pre", *QKV, "z", "attn_out", "mlp_out")
        self.names = names + (("resid_mid",) if config.norm_placement == "post" else ())
        self._ropes: list[Rope] | None = None
        self._last: tuple[int, bool, Record] | None = None  # (layer, whole block?, record)
        self._lock = threading.Lock()

    def ropes(self) -> list[Rope]:
        if self._ropes is None:
            self._ropes = layer_ropes(self.config, torch.arange(self.n_tokens, device=self.device))
        return self._ropes

    def record(self, layer: int, resid_pre: torch.Tensor, whole: bool) -> Mapping[str, torch.Tensor]:
        """Layer `layer`'s record computed again: q, k_kv, v_kv only, or (whole) all of the block's."""
        with self._lock:
            last = self._last
        if last is not None and last[0] == layer and (last[1] or not whole):
            return last[2]
        w, cfg = self.weights.blocks[layer], self.config
        with torch.inference_mode():
            if whole:
                record: Record = {}
                block(resid_pre, w, cfg, self.causal, self.heads_on[layer], self.ropes()[layer],
                      self.patch.get(layer, {}), self.attention, record=record, layer=layer)
                record.pop("pattern", None)
            else:
                q, k, v = block_qkv(resid_pre, w, cfg, self.ropes()[layer])
                record = {"q": q, "k_kv": k, "v_kv": v}
        record = MappingProxyType(record)
        with self._lock:
            self._last = (layer, whole, record)
        return record


class LeanLayer(Mapping):
    """One layer of a lean trace, read like a full trace's record: `layer["q"]` is computed on access."""

    def __init__(self, recipe: Recipe, layer: int, held: Mapping[str, torch.Tensor]):
        self._recipe, self._layer = recipe, layer
        self.held = MappingProxyType(dict(held))  # what the trace really holds: resid_pre

    def __getitem__(self, name: str) -> torch.Tensor:
        if name in self.held:
            return self.held[name]
        if name not in self._recipe.names:
            raise KeyError(name)
        return self._recipe.record(self._layer, self.held["resid_pre"], whole=name not in QKV)[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._recipe.names)

    def __len__(self) -> int:
        return len(self._recipe.names)


def held(record: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    """What a layer's record holds in memory (a lean layer: resid_pre only), without computing anything."""
    return record.held if isinstance(record, LeanLayer) else record
