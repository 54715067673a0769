"""Δe: how far each head moves each token, how the heads add up, and the value down / value up factoring."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..arrays import readonly
from ..model import Model
from ..trace import Trace


def head_delta_norms(trace: Trace, layer: int) -> np.ndarray:
    """[n_heads, n_tokens]: ‖Δe‖ = ‖head_out‖, how far each head moves each token's embedding."""
    return readonly(trace["head_out", layer].norm(dim=-1))


@dataclass(frozen=True)
class DeltaSum:
    """Each head's Δe at one token, their sum and the attention output: Σ_h head_out + b_O = attn_out."""

    layer: int
    token: int
    head_out: np.ndarray  # [n_heads, d_model]
    b_O: np.ndarray  # [d_model]; zeros when the model has no output bias
    has_bias: bool
    heads_sum: np.ndarray  # [d_model], Σ_h head_out
    attn_out: np.ndarray  # [d_model]
    resid_pre: np.ndarray  # [d_model], the embedding before this layer
    along: np.ndarray  # [n_heads], each head's component along attn_out's direction
    bias_along: float  # b_O's component along attn_out's direction
    error: float  # max |Σ_h head_out + b_O − attn_out|

    @property
    def head_norms(self) -> np.ndarray:  # [n_heads]
        return np.linalg.norm(self.head_out, axis=-1)

    @property
    def attn_norm(self) -> float:
        return float(np.linalg.norm(self.attn_out))


def delta_sum(trace: Trace, layer: int, token: int) -> DeltaSum:
    """Decompose the attention output at `token` into its heads' Δe (and the output bias)."""
    head_out = trace["head_out", layer][:, token].double()  # [n_heads, d_model]
    attn_out = trace["attn_out", layer][token].double()  # [d_model]
    bias = trace._weights.blocks[layer].attn.b_O
    b_O = bias.double().cpu() if bias is not None else torch.zeros_like(attn_out)
    heads_sum = head_out.sum(0)
    unit = attn_out / attn_out.norm().clamp_min(1e-12)
    return DeltaSum(layer=layer, token=token, head_out=readonly(head_out), b_O=readonly(b_O),
                    has_bias=bias is not None, heads_sum=readonly(heads_sum), attn_out=readonly(attn_out),
                    resid_pre=readonly(trace["resid_pre", layer][token]), along=readonly(head_out @ unit),
                    bias_along=float(b_O @ unit), error=float((heads_sum + b_O - attn_out).abs().max()))


@dataclass(frozen=True)
class ValueFactoring:
    """One head's value map W_V[h] W_O[h] factored into 'value down' and 'value up', and what a query mixes."""

    layer: int
    head: int
    kv_head: int  # which key/value head this query head reads (grouped-query attention)
    kv_group: int  # how many query heads share that key/value head
    value_down_shape: tuple[int, int]  # W_V[h]: (d_model, d_head)
    value_up_shape: tuple[int, int]  # W_O[h]: (d_head, d_model)
    query: int
    weights: np.ndarray  # [n_tokens] pattern[h, query, :] (0 for a head switched off), the mixing weights
    value_norms: np.ndarray  # [n_tokens] ‖v_j W_O[h]‖: each token's value vector in embedding space
    contributions: np.ndarray  # [n_tokens, d_model] w_j · v_j W_O[h]
    error: float  # max |Σ_j w_j v_j W_O[h] − head_out[h, query]|

    @property
    def value_down_params(self) -> int:
        return self.value_down_shape[0] * self.value_down_shape[1]

    @property
    def value_up_params(self) -> int:
        return self.value_up_shape[0] * self.value_up_shape[1]

    @property
    def contribution_norms(self) -> np.ndarray:  # [n_tokens]
        return np.linalg.norm(self.contributions, axis=-1)


def value_factoring(model: Model, trace: Trace, layer: int, head: int, query: int) -> ValueFactoring:
    """The value vectors the query mixes, weighted by the pattern, and the check that they sum to Δe."""
    cfg = model.config
    attn = model._weights.blocks[layer].attn
    kv_head = head // cfg.kv_group
    on = float(trace.head_mask[layer, head])
    weights = trace.pattern_rows(layer, slice(query, query + 1), head)[0].double() * on  # [n_tokens]
    values = trace["v", layer, head].double() @ attn.W_O[head].double().cpu()  # [n_tokens, d_model]
    contributions = weights[:, None] * values  # [n_tokens, d_model]
    error = (contributions.sum(0) - trace["head_out", layer, head][query].double()).abs().max()
    return ValueFactoring(layer=layer, head=head, kv_head=kv_head, kv_group=cfg.kv_group,
                          value_down_shape=tuple(attn.W_V[kv_head].shape), value_up_shape=tuple(attn.W_O[head].shape),
                          query=query, weights=readonly(weights), value_norms=readonly(values.norm(dim=-1)),
                          contributions=readonly(contributions), error=float(error))
