"""THE forward pass: embed -> blocks -> unembed, recording every intermediate.

One function serves GPT-2, Llama and BERT; `ModelConfig` picks the norm, position scheme, MLP and
key/value head sharing. Weights come in the uniform layout of `engine.convert` (TransformerLens names).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import ModelConfig

Params = dict[str, torch.Tensor]


def norm(x: torch.Tensor, params: Params, prefix: str, cfg: ModelConfig) -> torch.Tensor:
    """LayerNorm or RMSNorm over the last dimension, with weight `{prefix}.w` (and bias `{prefix}.b`)."""
    if cfg.norm == "rmsnorm":
        variance = x.float().pow(2).mean(-1, keepdim=True)
        return params[f"{prefix}.w"] * (x.float() * torch.rsqrt(variance + cfg.norm_eps)).to(x.dtype)
    return F.layer_norm(x, x.shape[-1:], params[f"{prefix}.w"], params.get(f"{prefix}.b"), cfg.norm_eps)


def activation(x: torch.Tensor, act: str) -> torch.Tensor:
    if act == "silu":
        return F.silu(x)
    if act == "gelu_new":
        return F.gelu(x, approximate="tanh")
    return F.gelu(x)


def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (i, i + d_head/2) of each head's vector by its position's angle (Llama's layout)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def rotary_angles(cfg: ModelConfig, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin: [n, d_head] for positions 0..n-1."""
    exponents = torch.arange(0, cfg.d_head, 2, dtype=torch.int64, device=device).float() / cfg.d_head
    inv_freq = 1.0 / (cfg.rope_theta**exponents)  # [d_head/2]
    angles = torch.arange(n, device=device).float()[:, None] * inv_freq[None, :]  # [n, d_head/2]
    angles = torch.cat((angles, angles), dim=-1)  # [n, d_head]
    return angles.cos(), angles.sin()


def project(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """x [n, d_model] through per-head W [h, d_model, d_head] -> [h, n, d_head]."""
    out = torch.einsum("nd,hde->hne", x, W)
    return out if b is None else out + b[:, None, :]


def attention(x: torch.Tensor, params: Params, layer: int, cfg: ModelConfig, causal: bool,
              heads_on: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None,
              record: dict) -> torch.Tensor:
    """Multi-head masked attention on normed input x [n, d_model]; returns attn_out [n, d_model]."""
    p = f"blocks.{layer}.attn"
    q = project(x, params[f"{p}.W_Q"], params.get(f"{p}.b_Q"))  # [n_heads, n, d_head]
    k = project(x, params[f"{p}.W_K"], params.get(f"{p}.b_K"))  # [n_kv_heads, n, d_head]
    v = project(x, params[f"{p}.W_V"], params.get(f"{p}.b_V"))  # [n_kv_heads, n, d_head]
    if rope is not None:
        q, k = rotary(q, *rope), rotary(k, *rope)
    k_all = k.repeat_interleave(cfg.kv_group, dim=0)  # [n_heads, n, d_head]
    v_all = v.repeat_interleave(cfg.kv_group, dim=0)  # [n_heads, n, d_head]

    scores = (q @ k_all.transpose(-1, -2)).div_(math.sqrt(cfg.d_head))  # [n_heads, n_query, n_key]
    if causal:
        n = x.shape[0]
        future = torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1)  # key after query
        scores.masked_fill_(future, float("-inf"))  # in place: n_heads × n × n is the big tensor here
    pattern = torch.softmax(scores, dim=-1)  # [n_heads, n, n]; exactly 0 where masked
    z = (pattern @ v_all) * heads_on[:, None, None]  # [n_heads, n, d_head]
    attn_out = torch.einsum("hne,hed->nd", z, params[f"{p}.W_O"])  # [n, d_model]
    if f"{p}.b_O" in params:
        attn_out = attn_out + params[f"{p}.b_O"]
    record.update(q=q, k_kv=k, v_kv=v, pattern=pattern, z=z, attn_out=attn_out)
    return attn_out


def mlp(x: torch.Tensor, params: Params, layer: int, cfg: ModelConfig) -> torch.Tensor:
    """GELU MLP (GPT-2, BERT) or SwiGLU (Llama) on x [n, d_model] -> [n, d_model]."""
    p = f"blocks.{layer}.mlp"

    def linear(h: torch.Tensor, name: str) -> torch.Tensor:
        out = h @ params[f"{p}.W_{name}"]
        return out + params[f"{p}.b_{name}"] if f"{p}.b_{name}" in params else out

    if cfg.mlp == "swiglu":
        hidden = activation(linear(x, "gate"), cfg.act) * linear(x, "in")  # [n, d_mlp]
    else:
        hidden = activation(linear(x, "in"), cfg.act)  # [n, d_mlp]
    return linear(hidden, "out")


def embed(token_ids: torch.Tensor, params: Params, cfg: ModelConfig) -> torch.Tensor:
    """Token (+ learned position, + token type 0) embedding: [n, d_model]."""
    x = params["embed.W_E"][token_ids]
    if cfg.positions == "learned":
        x = x + params["pos_embed.W_pos"][: len(token_ids)]
    if cfg.n_token_types:
        x = x + params["token_type_embed.W_type"][0]
    if "embed_ln.w" in params:
        x = norm(x, params, "embed_ln", cfg)
    return x


def unembed(resid: torch.Tensor, params: Params, cfg: ModelConfig, final_norm: bool = True) -> torch.Tensor:
    """Residual stream [..., d_model] -> logits [..., d_vocab] (final norm, BERT's MLM transform)."""
    x = norm(resid, params, "ln_final", cfg) if final_norm and "ln_final.w" in params else resid
    if cfg.lm_head_transform:
        x = activation(x @ params["unembed.W_dense"] + params["unembed.b_dense"], cfg.act)
        x = norm(x, params, "unembed_ln", cfg)
    logits = x @ params["unembed.W_U"]
    return logits + params["unembed.b_U"] if "unembed.b_U" in params else logits


def forward(params: Params, cfg: ModelConfig, token_ids: torch.Tensor, causal: bool,
            head_mask: torch.Tensor, pattern_dtype: torch.dtype = torch.float32) -> dict:
    """Run one sequence. Returns {"store": {(name, layer): tensor}, "resid_final", "logits"}."""
    store: dict[tuple[str, int], torch.Tensor] = {}
    x = embed(token_ids, params, cfg)  # [n, d_model]
    rope = rotary_angles(cfg, len(token_ids), x.device) if cfg.positions == "rotary" else None
    heads_on = head_mask.to(device=x.device, dtype=x.dtype)  # [n_layers, n_heads]
    pre = cfg.norm_placement == "pre"
    for layer in range(cfg.n_layers):
        record: dict[str, torch.Tensor] = {"resid_pre": x}
        attn_in = norm(x, params, f"blocks.{layer}.ln1", cfg) if pre else x
        attn_out = attention(attn_in, params, layer, cfg, causal, heads_on[layer], rope, record)
        if pre:
            resid_mid = x + attn_out
            mlp_out = mlp(norm(resid_mid, params, f"blocks.{layer}.ln2", cfg), params, layer, cfg)
            x = resid_mid + mlp_out
        else:  # post-norm: the norm follows each sum
            resid_mid = norm(x + attn_out, params, f"blocks.{layer}.ln1", cfg)
            mlp_out = mlp(resid_mid, params, layer, cfg)
            x = norm(resid_mid + mlp_out, params, f"blocks.{layer}.ln2", cfg)
        record.update(resid_mid=resid_mid, mlp_out=mlp_out, resid_post=x)
        record["pattern"] = record["pattern"].to(pattern_dtype)
        store.update({(name, layer): t for name, t in record.items()})
    resid_final = norm(x, params, "ln_final", cfg) if "ln_final.w" in params else x
    logits = unembed(resid_final, params, cfg, final_norm=False) if cfg.has_lm_head else None
    return {"store": store, "resid_final": resid_final, "logits": logits}
