"""THE forward pass: embed -> blocks -> final norm, recording every intermediate that a Trace stores.

One function serves every family (GPT-2, Llama, BERT, GPT-NeoX, Gemma, ...); `ModelConfig` picks the norm,
position scheme, MLP, key/value head sharing and what other families change (parallel blocks, partial or
interleaved rotary, windows, soft-caps, q/k norms, norms after each sublayer). Every such switch defaults to
off and costs one comparison where it is off. Attention runs fused (`scaled_dot_product_attention`, which never
materialises the n × n pattern) or explicitly (scores, mask, softmax, pattern @ v: the reference the fused
path is tested against).
Patterns are not recorded: a Trace recomputes them from the stored q and k when a view asks.

Three extras serve the app's interventions without a second forward pass:
- `head_mask` switches heads off (their z is zeroed, so they add nothing);
- `patch` replaces a head's z at chosen query positions (activation patching);
- `start` resumes from a reused prefix: layers before it are taken from an earlier run of the same tokens;
and `cache` keeps each layer's keys and values so that generation computes only the new tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from .config import ModelConfig
from .errors import RunCancelled
from .weights import AttentionWeights, BlockWeights, MLPWeights, NormWeights, Weights

Attention = Literal["fused", "explicit"]
# layer -> head -> query position -> z [d_head]
Patch = Mapping[int, Mapping[int, Mapping[int, torch.Tensor]]]
# what one block records: resid_pre, q, k_kv, v_kv, z, attn_out, resid_mid (post-norm only), mlp_out
Record = dict[str, torch.Tensor]


def norm(x: torch.Tensor, w: NormWeights, cfg: ModelConfig) -> torch.Tensor:
    """LayerNorm or RMSNorm over the last dimension."""
    if cfg.norm == "rmsnorm":
        variance = x.float().pow(2).mean(-1, keepdim=True)
        return w.w * (x.float() * torch.rsqrt(variance + cfg.norm_eps)).to(x.dtype)
    return F.layer_norm(x, x.shape[-1:], w.w, w.b, cfg.norm_eps)


def qk_norm(x: torch.Tensor, w: NormWeights, cfg: ModelConfig) -> torch.Tensor:
    """RMSNorm of q or k [..., h, m, d_head]: over each head's d_head ("head": Qwen3, Gemma 3) or over all heads of
    a position at once ("all": OLMo 2, whose weight is then [h, 1, d_head])."""
    dims = (-1,) if cfg.qk_norm == "head" else (-3, -1)
    variance = x.float().pow(2).mean(dims, keepdim=True)
    return w.w * (x.float() * torch.rsqrt(variance + cfg.norm_eps)).to(x.dtype)


def activation(x: torch.Tensor, act: str) -> torch.Tensor:
    if act == "relu":
        return F.relu(x)
    if act == "silu":
        return F.silu(x)
    if act == "gelu_new":
        return F.gelu(x, approximate="tanh")
    return F.gelu(x)


def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool = False) -> torch.Tensor:
    """Rotate each head's vector by its position's angle: pairs (i, i + r/2) (Llama's layout) or (2i, 2i+1)
    (interleaved, GPT-J) of its first r = cos.shape[-1] dimensions; the rest pass unrotated (partial rotary)."""
    r = cos.shape[-1]
    if r < x.shape[-1]:
        return torch.cat((rotary(x[..., :r], cos, sin, interleaved), x[..., r:]), dim=-1)
    if interleaved:
        rotated = torch.stack((-x[..., 1::2], x[..., ::2]), dim=-1).flatten(-2)
    else:
        half = r // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def rotary_angles(cfg: ModelConfig, positions: torch.Tensor, theta: float | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin: [n, r] for the given positions [n], r = the rotated dimensions of a head (rotary_dim or d_head)."""
    r = cfg.rotary_dim or cfg.d_head
    exponents = torch.arange(0, r, 2, dtype=torch.int64, device=positions.device).float() / r
    inv_freq = 1.0 / ((theta or cfg.rope_theta)**exponents)  # [r/2]
    angles = positions.float()[:, None] * inv_freq[None, :]  # [n, r/2]
    angles = angles.repeat_interleave(2, dim=-1) if cfg.rotary_interleaved else torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


Rope = tuple[torch.Tensor, torch.Tensor] | None


def layer_ropes(cfg: ModelConfig, positions: torch.Tensor) -> list[Rope]:
    """Each layer's (cos, sin) for positions [n] (None without rotary); one table per distinct rotary base."""
    if cfg.positions != "rotary":
        return [None] * cfg.n_layers
    thetas = cfg.layer_rope_theta or (cfg.rope_theta,) * cfg.n_layers
    tables = {theta: rotary_angles(cfg, positions, theta) for theta in set(thetas)}
    return [tables[theta] for theta in thetas]


def project(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """x [..., m, d_model] through per-head W [h, d_model, d_head] -> [..., h, m, d_head].

    One matmul against W seen as [d_model, h·d_head]: the weights are stored that way (engine.weights), so
    the reshape is free and no weight is copied per call (which dominates a one-token generation step)."""
    h, d_model, d_head = W.shape
    out = x @ W.permute(1, 0, 2).reshape(d_model, h * d_head)  # [..., m, h·d_head]
    out = out.unflatten(-1, (h, d_head)).transpose(-2, -3)  # [..., h, m, d_head]
    return out if b is None else out + b[:, None, :]


def unproject(z: torch.Tensor, W_O: torch.Tensor) -> torch.Tensor:
    """Sum over heads of z [..., h, m, d_head] @ W_O[h] [d_head, d_model] -> [..., m, d_model] (one matmul)."""
    h, d_head, d_model = W_O.shape
    return z.transpose(-2, -3).flatten(-2) @ W_O.reshape(h * d_head, d_model)


def hidden_keys(n_query: int, n_key: int, query_offset: int, causal: bool, window: int = 0,
                device: torch.device | str = "cpu") -> torch.Tensor | None:
    """bool [n_query, n_key]: True where query i (at position query_offset + i) may not see key j: a later key
    (causal), or one `window` or more positions away (a sliding window: earlier keys; later ones too when not
    causal). None when every key is seen."""
    hidden = None
    if causal:
        hidden = torch.ones(n_query, n_key, dtype=torch.bool, device=device).triu(1 + query_offset)
    if window:
        far = torch.ones(n_query, n_key, dtype=torch.bool, device=device).tril(query_offset - window)
        if not causal:
            far.logical_or_(torch.ones_like(far).triu(query_offset + window))
        hidden = far if hidden is None else hidden.logical_or_(far)
    return hidden


def causal_mask(n_query: int, n_key: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """bool [n_query, n_key]: True where a key comes after its query (queries are the last n_query positions)."""
    return hidden_keys(n_query, n_key, n_key - n_query, True, device=device)


def scaled_scores(q: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None = None, *, scale: float = 0.0,
                  softcap: float = 0.0) -> torch.Tensor:
    """The model's attention scores: q·k times scale (0: 1/√d_head), soft-capped to ±softcap by cap·tanh(s/cap)
    where softcap > 0 (Gemma 2), plus bias [m, n] (a mask of 0 and -inf) where given: q [..., h, m, d_head],
    k [..., h, n, d_head] -> [..., h, m, n]. The scale goes on q (the small operand) and, without a soft-cap, the
    bias comes with the matmul, so the h × m × n tensor is written once. Each row depends on its own query only:
    a block of rows equals those rows of the whole."""
    *batch, m, d_head = q.shape
    n = k.shape[-2]
    q3 = (q * (scale or 1 / math.sqrt(d_head))).reshape(-1, m, d_head)  # [b, m, d_head]
    k3 = k.reshape(-1, n, d_head)  # [b, n, d_head]
    out = torch.empty(q3.shape[0], m, n, dtype=q.dtype, device=q.device)
    if softcap:
        torch.bmm(q3, k3.transpose(-1, -2), out=out)
        out.div_(softcap).tanh_().mul_(softcap)
        if bias is not None:
            out.add_(bias)
    else:
        torch.baddbmm(out if bias is None else bias, q3, k3.transpose(-1, -2), beta=0 if bias is None else 1,
                      out=out)
    return out.view(*batch, m, n)


def explicit_pattern(q: torch.Tensor, k: torch.Tensor, causal: bool, query_offset: int = 0, *, scale: float = 0.0,
                     window: int = 0, softcap: float = 0.0) -> torch.Tensor:
    """softmax(scores) with hidden keys at exactly 0: q [h, m, d_head] (positions query_offset..), k
    [h, n, d_head] -> [h, m, n]. The reference computation, also what a Trace uses for patterns on access.
    The h × m × n tensor is allocated once: scale and mask come with the matmul, the softmax is in place."""
    m, n = q.shape[-2], k.shape[-2]
    bias = None
    if causal and not window:
        bias = torch.full((m, n), float("-inf"), dtype=q.dtype, device=q.device).triu_(1 + query_offset)  # [m, n]
    elif causal or window:
        hidden = hidden_keys(m, n, query_offset, causal, window, q.device)  # [m, n]
        bias = torch.zeros((m, n), dtype=q.dtype, device=q.device).masked_fill_(hidden, float("-inf"))
    scores = scaled_scores(q, k, bias, scale=scale, softcap=softcap)  # [h, m, n], -inf where hidden
    return torch.softmax(scores, dim=-1, out=scores)


def attention_z(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, how: Attention, *,
                scale: float = 0.0, window: int = 0, softcap: float = 0.0, record: Record | None = None
                ) -> torch.Tensor:
    """z = pattern @ v for queries q [..., n_heads, m, d_head] against the key/value heads k, v [..., n_kv_heads,
    n, d_head] that they share in groups (the queries are the last m of the n positions). A soft-capped model
    always takes the explicit path (the fused kernel cannot cap scores). The explicit path puts the pattern it
    computed in `record` (forward keeps it only when asked)."""
    m, n = q.shape[-2], k.shape[-2]
    group = q.shape[-3] // k.shape[-3]
    window = window if window < n else 0  # no two of these n positions are a window apart: nothing to hide
    if how == "explicit" or softcap:
        k, v = k.repeat_interleave(group, dim=-3), v.repeat_interleave(group, dim=-3)  # [..., n_heads, n, d_head]
        pattern = explicit_pattern(q, k, causal, query_offset=n - m, scale=scale, window=window,
                                   softcap=softcap)  # [..., n_heads, m, n]
        if record is not None:
            record["pattern"] = pattern
        return pattern @ v
    mask = None
    if window:
        mask = ~hidden_keys(m, n, n - m, causal, window, q.device)
    elif causal and m > 1 and m != n:  # SDPA's is_causal aligns the mask top-left: give it the real one
        mask = ~causal_mask(m, n, q.device)
    batched = q.ndim > 3
    q, k, v = (q, k, v) if batched else (q[None], k[None], v[None])  # SDPA's kernels want [batch, h, m, d]
    z = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and m == n and m > 1 and not window,
                                       enable_gqa=group > 1, scale=scale or None)  # shared heads read in place
    return z if batched else z[0]  # [..., n_heads, m, d_head]


# Adds this call's keys and values [..., n_kv_heads, m, d_head] to those of earlier positions (a generation
# cache, or a base run's) and returns all of them, earlier positions first.
Extend = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
# What replaces z in one layer: head -> query position -> z [d_head]; one mapping, or one per batch row.
HeadPatch = Mapping[int, Mapping[int, torch.Tensor]]


class KVCache:
    """Keys and values (after rotary) of every layer, in buffers sized for the whole generation: each step
    writes its token's in place, so a step costs the same whatever the length so far."""

    def __init__(self, cfg: ModelConfig, capacity: int, device: torch.device, dtype: torch.dtype):
        shape = (cfg.n_layers, cfg.n_kv_heads, capacity, cfg.d_head)
        self.k = torch.empty(shape, device=device, dtype=dtype)  # [n_layers, n_kv_heads, capacity, d_head]
        self.v = torch.empty(shape, device=device, dtype=dtype)
        self.length = 0  # positions filled by completed passes

    def extend(self, layer: int) -> Extend:
        def add(k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            end = self.length + k.shape[-2]
            self.k[layer, :, self.length:end], self.v[layer, :, self.length:end] = k, v
            return self.k[layer, :, :end], self.v[layer, :, :end]
        return add


def after(k_past: torch.Tensor, v_past: torch.Tensor) -> Extend:
    """Extend with fixed earlier keys and values [n_kv_heads, p, d_head] (a base run's), for any batch size."""
    def add(k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.cat([k_past.expand(*k.shape[:-2], -1, -1), k], dim=-2),
                torch.cat([v_past.expand(*v.shape[:-2], -1, -1), v], dim=-2))
    return add


def apply_patch(z: torch.Tensor, patch: HeadPatch | Sequence[HeadPatch]) -> None:
    """Replace z [(B,) n_heads, m, d_head] in place at the patched heads and query positions."""
    rows = [((), patch)] if isinstance(patch, Mapping) else [((b,), p) for b, p in enumerate(patch)]
    for row, heads in rows:
        for head, positions in heads.items():
            for position, vector in positions.items():
                z[(*row, head, position)] = vector


def qkv(x: torch.Tensor, w: AttentionWeights, cfg: ModelConfig, rope: Rope
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries [(B,) n_heads, m, d_head] and the shared key and value heads [(B,) n_kv_heads, m, d_head] of the
    attention's input x [(B,) m, d_model]: projected, then q/k norms and rotary where the model has them."""
    q = project(x, w.W_Q, w.b_Q)  # [(B,) n_heads, m, d_head]
    k = project(x, w.W_K, w.b_K)  # [(B,) n_kv_heads, m, d_head]
    v = project(x, w.W_V, w.b_V)  # [(B,) n_kv_heads, m, d_head]
    if cfg.qk_norm:
        q, k = qk_norm(q, w.q_norm, cfg), qk_norm(k, w.k_norm, cfg)
    if rope is not None:
        q, k = rotary(q, *rope, cfg.rotary_interleaved), rotary(k, *rope, cfg.rotary_interleaved)
    return q, k, v


def block_qkv(resid_pre: torch.Tensor, w: BlockWeights, cfg: ModelConfig, rope: Rope
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v of a block from its resid_pre, exactly as `block` computes them (pre-norm models norm first)."""
    x = maybe_norm(resid_pre, w.ln1, cfg) if cfg.norm_placement == "pre" else resid_pre
    return qkv(x, w.attn, cfg, rope)


def attention(x: torch.Tensor, w: AttentionWeights, cfg: ModelConfig, causal: bool, heads_on: torch.Tensor,
              rope: Rope, patch: HeadPatch | Sequence[HeadPatch], how: Attention, extend: Extend | None = None,
              record: Record | None = None, window: int = 0) -> torch.Tensor:
    """Multi-head masked attention on normed input x [(B,) m, d_model], the queries at the last m positions
    (earlier positions' keys and values come from `extend`). Returns attn_out [(B,) m, d_model]."""
    q, k, v = qkv(x, w, cfg, rope)
    if record is not None:
        record.update(q=q, k_kv=k, v_kv=v)
    if extend is not None:
        k, v = extend(k, v)  # [(B,) n_kv_heads, p + m, d_head]
    z = attention_z(q, k, v, causal, how, scale=cfg.attn_scale, window=window, softcap=cfg.attn_softcap,
                    record=record)
    z = z * heads_on[:, None, None]  # [(B,) n_heads, m, d_head]
    apply_patch(z, patch)
    attn_out = unproject(z, w.W_O)  # [(B,) m, d_model]
    if w.b_O is not None:
        attn_out = attn_out + w.b_O
    if record is not None:
        record.update(z=z, attn_out=attn_out)
    return attn_out


def mlp(x: torch.Tensor, w: MLPWeights, cfg: ModelConfig) -> torch.Tensor:
    """Plain MLP act(x W_in) W_out (GPT-2, BERT, OPT) or gated act(x W_gate) * x W_in (SwiGLU, GeGLU) on
    x [n, d_model] -> [n, d_model]."""

    def linear(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        out = h @ W
        return out if b is None else out + b

    if w.W_gate is not None:
        hidden = activation(linear(x, w.W_gate, w.b_gate), cfg.act) * linear(x, w.W_in, w.b_in)  # [n, d_mlp]
    else:
        hidden = activation(linear(x, w.W_in, w.b_in), cfg.act)  # [n, d_mlp]
    return linear(hidden, w.W_out, w.b_out)


def maybe_norm(x: torch.Tensor, w: NormWeights | None, cfg: ModelConfig) -> torch.Tensor:
    return x if w is None else norm(x, w, cfg)


def block(x: torch.Tensor, w: BlockWeights, cfg: ModelConfig, causal: bool, heads_on: torch.Tensor, rope: Rope,
          patch: HeadPatch | Sequence[HeadPatch], how: Attention, extend: Extend | None = None,
          record: Record | None = None, layer: int = 0) -> torch.Tensor:
    """Block `layer` on the residual stream x [(B,) m, d_model] -> resid_post. record, when given, receives what
    a Trace stores of the block. Pre-norm blocks may also norm each sublayer's output before it is added
    (Gemma 2/3: ln1_post, ln2_post; OLMo 2 has those alone): attn_out and mlp_out are then what is added."""
    if record is not None:
        record["resid_pre"] = x
    window = cfg.windows[layer] if cfg.windows else 0
    if cfg.norm_placement == "pre":
        attn_out = attention(maybe_norm(x, w.ln1, cfg), w.attn, cfg, causal, heads_on, rope, patch, how, extend,
                             record, window)
        if w.ln1_post is not None:
            attn_out = norm(attn_out, w.ln1_post, cfg)
            if record is not None:
                record["attn_out"] = attn_out
        resid_mid = x + attn_out
        mlp_out = mlp(maybe_norm(x if cfg.parallel else resid_mid, w.ln2, cfg), w.mlp, cfg)
        if w.ln2_post is not None:
            mlp_out = norm(mlp_out, w.ln2_post, cfg)
        resid_post = resid_mid + mlp_out  # parallel: x + attn_out + mlp_out, the MLP having read x
    else:  # post-norm: the norm follows each sum
        attn_out = attention(x, w.attn, cfg, causal, heads_on, rope, patch, how, extend, record, window)
        resid_mid = norm(x + attn_out, w.ln1, cfg)
        mlp_out = mlp(resid_mid, w.mlp, cfg)
        resid_post = norm(resid_mid + mlp_out, w.ln2, cfg)
        if record is not None:
            record["resid_mid"] = resid_mid  # not a plain sum: keep it
    if record is not None:
        record["mlp_out"] = mlp_out
    return resid_post


def embed(token_ids: torch.Tensor, w: Weights, cfg: ModelConfig, offset: int = 0) -> torch.Tensor:
    """Token (+ learned position, + token type 0) embedding of ids at positions offset..: [n, d_model]."""
    x = w.W_E[token_ids]
    if cfg.embed_scale != 1.0:
        x = x * cfg.embed_scale
    if w.W_pos is not None:
        x = x + w.W_pos[offset: offset + len(token_ids)]
    if w.W_type is not None:
        x = x + w.W_type[0]
    if w.embed_ln is not None:
        x = norm(x, w.embed_ln, cfg)
    return x


def final_norm(resid: torch.Tensor, w: Weights, cfg: ModelConfig) -> torch.Tensor:
    return norm(resid, w.ln_final, cfg) if w.ln_final is not None else resid


def unembed(x: torch.Tensor, w: Weights, cfg: ModelConfig) -> torch.Tensor:
    """Final-normed residual [..., d_model] -> logits [..., d_vocab] (with BERT's MLM transform)."""
    u = w.unembed
    if u.W_dense is not None:
        x = norm(activation(x @ u.W_dense + u.b_dense, cfg.act), u.ln, cfg)
    logits = x @ u.W_U
    logits = logits if u.b_U is None else logits + u.b_U
    if cfg.final_softcap:
        logits = torch.tanh(logits / cfg.final_softcap) * cfg.final_softcap
    return logits


@dataclass
class Forward:
    """What a forward pass returns: per-layer records, and the final-normed residual."""

    records: list[Record]  # one per layer run
    resid_last: torch.Tensor  # [n, d_model], resid_post of the last layer
    resid_final: torch.Tensor  # [n, d_model], after the final norm


def forward(w: Weights, cfg: ModelConfig, token_ids: torch.Tensor, causal: bool, head_mask: torch.Tensor, *,
            patch: Patch | None = None, attention_impl: Attention = "fused",
            start: tuple[int, torch.Tensor] | None = None, cache: KVCache | None = None, offset: int = 0,
            cancel: Callable[[], bool] | None = None, keep_pattern: bool = False, lean: bool = False) -> Forward:
    """Run token_ids [m] (at positions offset..offset+m-1) through the blocks.

    start=(layer, resid_pre of that layer): skip the earlier layers (their records are the caller's).
    cache: keys and values of positions 0..offset-1 from earlier calls; this call's are added to it.
    cancel: asked before each layer; True stops the run with RunCancelled.
    keep_pattern: the explicit path's records keep the pattern each layer computed ("pattern").
    lean: the records keep only resid_pre (and the pattern, with keep_pattern): a lean Trace recomputes the rest.
    """
    patch = patch or {}
    first, x = start if start is not None else (0, embed(token_ids, w, cfg, offset))
    ropes = layer_ropes(cfg, torch.arange(offset, offset + len(token_ids), device=x.device))
    heads_on = head_mask.to(device=x.device, dtype=x.dtype)  # [n_layers, n_heads]
    records: list[Record] = []
    for layer in range(first, cfg.n_layers):
        if cancel is not None and cancel():
            stop = RunCancelled(f"the run was cancelled before layer {layer}.")
            stop.done = (records, layer, x)  # what was computed: the model turns it into a reusable prefix
            raise stop
        record: Record = {}
        x = block(x, w.blocks[layer], cfg, causal, heads_on[layer], ropes[layer], patch.get(layer, {}),
                  attention_impl, extend=cache.extend(layer) if cache is not None else None, record=record,
                  layer=layer)
        if not keep_pattern:
            record.pop("pattern", None)
        if lean:
            record = {name: record[name] for name in ("resid_pre", "pattern") if name in record}
        records.append(record)
    if cache is not None:
        cache.length += len(token_ids)
    return Forward(records=records, resid_last=x, resid_final=final_norm(x, w, cfg))
