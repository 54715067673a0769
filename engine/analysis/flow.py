"""Information-flow shares and routes (after Ferrando & Voita, 2024, "Information Flow Routes").

A block adds parts into a sum `whole`. A part's proximity to the whole is max(0, ‖whole‖₁ − ‖whole − part‖₁)
(how much closer to the whole the sum gets for including it; 0 for a part that points away), and its share is
its proximity over the sum of all the parts' proximities at that position.

- Attention block at query i: whole = resid_pre[i] + attn_out[i]; parts = resid_pre[i] (the residual), one per
  (head h, key j): α_hij · v_hj W_O[h] (b_V rides in v), and b_O where the model has one (a bias part).
- MLP block at position i: whole = resid_mid[i] + mlp_out[i]; parts = resid_mid[i] and mlp_out[i].

Pre-norm models (GPT-2, Llama): those wholes are resid_mid and resid_post. Post-norm models (BERT): the rule
is applied to the same sums, which the block then normalises (resid_mid = ln1(whole)); a norm rescales every
part alike, so the shares are those of the normalised stream up to its centring and weight.
Where the families differ, the rule is applied to the sums their blocks form:
- an output norm after attention (Gemma 2/3, OLMo 2): resid_mid = resid_pre + norm(Σ head parts + b_O); the
  norm's statistic is frozen at each query, so each (head, key) part and b_O go through it linearly and still
  add up to the whole; the MLP's output norm stays inside mlp_out (one part);
- a parallel block (GPT-NeoX, GPT-J): one sum, resid_post = resid_pre + Σ head parts + b_O + mlp_out (the MLP
  reads resid_pre, there is no resid_mid between them). The rule runs once on it: `mlp` is mlp_out's share of
  that whole and `mlp_residual` = 1 − mlp the share of all the other parts together (the trace's partial sum
  resid_mid = resid_pre + attn_out); attn, attn_residual and attn_bias are those other parts' shares divided by
  mlp_residual, so they sum to 1 at each query as in a sequential block and attn × mlp_residual is a head's
  share of the block's whole (a route through the two levels multiplies them back);
- windows and soft-capped scores change only α, which is the run's own (a key outside the window has α = 0 and
  no share).
A switched-off head's parts are 0. At a query where a head's z was patched, z is not α @ v: refused.

`flow_route` follows the shares from one token at the top of the model down to the input: at each block it
keeps the edges whose share is at least `threshold` into a position already on the route.
Computed a block of query rows at a time (never a [n_heads, n, n, d_model] tensor at once).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..arrays import readonly
from ..errors import EngineError, InputError
from ..model import Model
from ..trace import Trace
from . import frozen_norms as fn
from .attribution import check_position

BLOCK_ELEMENTS = 1 << 22  # the [n_heads, rows, keys, d_model] block of parts: 4 M floats (16 MB), reused


@dataclass(frozen=True)
class FlowShares:
    """Shares of one layer's two blocks at the query rows `rows` (all positions by default)."""

    layer: int
    rows: tuple[int, ...]  # the query positions, in order
    attn: np.ndarray  # [n_heads, r, n_tokens]: head h reading key j, in the attention block's output at row i
    attn_residual: np.ndarray  # [r]: resid_pre's share in the attention block's output
    attn_bias: np.ndarray  # [r]: b_O's share (0 without an output bias)
    parallel: bool  # a parallel block: the shares come from its one sum (see the module)
    mlp: np.ndarray  # [r]: mlp_out's share in the MLP block's output
    mlp_residual: np.ndarray  # [r]: resid_mid's share


def _proximity(whole: torch.Tensor, whole_l1: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
    """max(0, ‖whole‖₁ − ‖whole − part‖₁) over the last axis."""
    return (whole_l1 - (whole - part).abs().sum(-1)).clamp_min(0)


def _rows(trace: Trace, rows: Sequence[int] | None) -> list[int]:
    if rows is None:
        return list(range(trace.n_tokens))
    return sorted({check_position(trace, int(r)) for r in rows})


@torch.inference_mode()
def flow_contributions(model: Model, trace: Trace, layer: int, rows: Sequence[int] | None = None) -> FlowShares:
    """The shares of every part of layer `layer`'s attention and MLP blocks at the query positions `rows`
    (default: every position); see the module for the rule."""
    cfg, w = trace.config, trace._weights
    fn.check_linear(cfg, "Information flow")
    if not (isinstance(layer, int) and 0 <= layer < cfg.n_layers):
        raise InputError(f"layer {layer} is outside 0..{cfg.n_layers - 1}.")
    rows = _rows(trace, rows)
    if any(rows_patched := [p for head in trace.patch.get(layer, {}).values() for p in head if p in rows]):
        raise EngineError(f"layer {layer}'s output at position(s) {sorted(set(rows_patched))} was patched: there "
                          "z is not the pattern times the values, so it cannot be split by key.")
    stored, block = trace.layers[layer], w.blocks[layer]
    n, H = trace.n_tokens, cfg.n_heads
    on = trace.head_mask_[layer].to(trace.device, torch.float32)
    v = trace._repeated("v", layer, slice(None)).float()  # [n_heads, n, d_head]
    u = torch.einsum("hne,hed->hnd", v, block.attn.W_O.float()) * on[:, None, None]  # [n_heads, n, d_model]
    index = torch.tensor(rows, dtype=torch.long, device=trace.device)
    resid_pre = stored["resid_pre"][index].float()  # [r, d_model]
    attn_out = stored["attn_out"][index].float()
    mlp_out = stored["mlp_out"][index].float()
    whole = resid_pre + attn_out + (mlp_out if cfg.parallel else 0)  # the sum the block forms
    whole_l1 = whole.abs().sum(-1)  # [r]
    r = len(rows)
    head_prox = torch.zeros(H, r, n, device=trace.device)
    res_prox = _proximity(whole, whole_l1, resid_pre)  # [r]
    b_O = torch.zeros(cfg.d_model, device=trace.device) if block.attn.b_O is None else block.attn.b_O.float()
    has_bias = block.attn.b_O is not None
    row_scale = torch.ones(r, device=trace.device)  # each query's frozen output-norm statistic (1: no norm)
    post = block.ln1_post
    if post is not None:  # attn_out = norm(Σ heads + b_O): each part through it, frozen at its query
        z = stored["z"][:, index].double()  # [n_heads, r, d_head]
        attn_sum = torch.einsum("hre,hed->rd", z, block.attn.W_O.double()) + b_O.double()  # [r, d_model]
        row_scale = fn.scale(attn_sum, cfg)[:, 0].float()
        u = fn.apply(u.double(), post, torch.ones((), dtype=torch.float64), cfg).float()
        b_O = fn.apply(b_O.double().expand(r, -1), post, row_scale[:, None].double(), cfg).float()  # [r, d_model]
        if post.b is not None:
            b_O, has_bias = b_O + post.b.float(), True
    bias_prox = (_proximity(whole, whole_l1, b_O.expand(r, -1)) if has_bias
                 else torch.zeros(r, device=trace.device))
    mlp_prox_joint = _proximity(whole, whole_l1, mlp_out) if cfg.parallel else None
    per_row = H * n * cfg.d_model
    size = max(1, BLOCK_ELEMENTS // per_row)
    buffer = torch.empty(H * size * n * cfg.d_model, device=trace.device)  # one block's parts, reused
    pattern = trace.pattern_rows(layer, slice(rows[0], rows[-1] + 1))[:, index - rows[0]].float()  # [H, r, n]
    pattern = pattern / row_scale[None, :, None]  # an output norm's frozen statistic rides on α
    for start in range(0, r, size):
        chunk = slice(start, min(start + size, r))
        keys = rows[chunk.stop - 1] + 1 if trace.causal else n  # later keys have α = 0 under a causal mask
        # whole − α·u for every (head, row, key): [n_heads, c, keys, d_model], then its L1 norm (two passes)
        rest = buffer[: H * (chunk.stop - chunk.start) * keys * cfg.d_model].view(H, -1, keys, cfg.d_model)
        torch.addcmul(whole[chunk][None, :, None], pattern[:, chunk, :keys, None], u[:, None, :keys], value=-1,
                      out=rest)
        rest_l1 = rest.abs_().sum(-1)  # [n_heads, c, keys]
        head_prox[:, chunk, :keys] = (whole_l1[chunk][None, :, None] - rest_l1).clamp_min(0)
    total = head_prox.sum((0, 2)) + res_prox + bias_prox  # [r]
    if cfg.parallel:  # one sum: the MLP's share of it, the rest's shares renormalised among themselves
        whole_total = total + mlp_prox_joint
        mlp_share = mlp_prox_joint / torch.where(whole_total > 0, whole_total, 1)
        safe = torch.where(total > 0, total, 1)
        return FlowShares(layer=layer, rows=tuple(rows), attn=readonly(head_prox / safe[None, :, None]),
                          attn_residual=readonly(res_prox / safe), attn_bias=readonly(bias_prox / safe),
                          mlp=readonly(mlp_share), mlp_residual=readonly(1 - mlp_share), parallel=True)
    safe = torch.where(total > 0, total, 1)
    resid_mid = (stored["resid_mid"][index] if "resid_mid" in stored else stored["resid_pre"][index]
                 + stored["attn_out"][index]).float()
    mlp_whole = resid_mid + mlp_out
    mlp_l1 = mlp_whole.abs().sum(-1)
    mlp_prox, mid_prox = _proximity(mlp_whole, mlp_l1, mlp_out), _proximity(mlp_whole, mlp_l1, resid_mid)
    mlp_total = torch.where(mlp_prox + mid_prox > 0, mlp_prox + mid_prox, 1)
    return FlowShares(layer=layer, rows=tuple(rows), attn=readonly(head_prox / safe[None, :, None]),
                      attn_residual=readonly(res_prox / safe), attn_bias=readonly(bias_prox / safe),
                      mlp=readonly(mlp_prox / mlp_total), mlp_residual=readonly(mid_prox / mlp_total), parallel=False)


@dataclass(frozen=True)
class RouteEdge:
    """One edge of a route. Levels: 2·layer is resid_pre of `layer`, 2·layer + 1 its resid_mid, 2·n_layers the
    last block's output. kind "head": head `head` of `layer` carries key `key` into query `query`; "attn_residual"
    and "mlp_residual": the residual stream at `query` passes the block; "mlp": the MLP at `query` adds to it."""

    layer: int
    kind: str  # "head", "attn_residual", "mlp", "mlp_residual"
    head: int  # -1 unless kind == "head"
    query: int  # the position the edge writes into
    key: int  # the position it reads from (== query except for a head)
    share: float

    @property
    def levels(self) -> tuple[int, int]:
        """(level it reads from, level it writes to)."""
        if self.kind in ("head", "attn_residual"):
            return 2 * self.layer, 2 * self.layer + 1
        return 2 * self.layer + 1, 2 * self.layer + 2


@dataclass(frozen=True)
class Route:
    position: int
    threshold: float
    edges: tuple[RouteEdge, ...]  # from the top layer down

    def head_edges(self) -> list[RouteEdge]:
        """The edges through a head, largest share first."""
        return sorted((e for e in self.edges if e.kind == "head"), key=lambda e: -e.share)


def flow_route(model: Model, trace: Trace, position: int, threshold: float,
               progress: Callable[[float], None] | None = None) -> Route:
    """The route from `position` at the top of the model down to the input: from the last layer down, keep each
    edge whose share is at least `threshold` into a position already on the route (each layer's shares computed
    only at those positions)."""
    if not 0 < threshold <= 1:
        raise InputError(f"the threshold must be in (0, 1], not {threshold}.")
    position = check_position(trace, position)
    active, edges = {position}, []
    L = trace.config.n_layers
    for layer in reversed(range(L)):
        shares = flow_contributions(model, trace, layer, rows=sorted(active))
        mid: set[int] = set()
        for r, i in enumerate(shares.rows):
            for kind, value in (("mlp", shares.mlp[r]), ("mlp_residual", shares.mlp_residual[r])):
                if value >= threshold:
                    edges.append(RouteEdge(layer, kind, -1, i, i, float(value)))
                    mid.add(i)
        below: set[int] = set()
        for r, i in enumerate(shares.rows):
            if i not in mid:
                continue
            if shares.attn_residual[r] >= threshold:
                edges.append(RouteEdge(layer, "attn_residual", -1, i, i, float(shares.attn_residual[r])))
                below.add(i)
            for h, j in np.argwhere(shares.attn[:, r] >= threshold):
                edges.append(RouteEdge(layer, "head", int(h), i, int(j), float(shares.attn[h, r, j])))
                below.add(int(j))
        active = below
        if progress is not None:
            progress((L - layer) / L)
        if not active:
            break
    return Route(position=position, threshold=float(threshold), edges=tuple(edges))
