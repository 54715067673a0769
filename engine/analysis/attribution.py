"""Direct logit attribution: how much each head, MLP, the embedding and the biases add to one logit (or to the
difference between two logits) at one position.

The final residual stream at `position` is a sum of parts: the embedding, each head's head_out, each MLP's
mlp_out and the biases. Freeze the final norm's scale at that position (engine.analysis.frozen_norms) and the
logit difference is linear in the residual stream: each part maps through the final norm's weight and
d = W_U[:, target] − W_U[:, baseline] to a number, and the numbers add up to the run's logit difference.
In practice: a read-out vector g = f_finalᵀ(d) and part · g for every part.

- heads[L, H] = head_out[L][H, position] · g (exactly 0 for a switched-off head);
- heads_by_source[L, H, j] = α[L, H, position, j] · (v[L][H, j] W_O[H]) · g (each key j's share; exactly 0 for
  a masked key; sums over j to heads[L, H] because z = α @ v, b_V included);
- mlps[L] = mlp_out[L][position] · g; embed = resid_pre[0][position] · g (token and position embeddings);
- bias = Σ b_O · g + the final norm's bias · d + b_U[target] − b_U[baseline];
- total = the sum of all parts; actual = the run's logit difference (from the final residual stream).

The newer families change none of this: a parallel block (GPT-NeoX, GPT-J) adds the same parts; an output
norm after attention (Gemma 2/3, OLMo 2: attn_out = norm(Σ head_out + b_O)) is frozen at the position's
statistic of that sum, so each head's part (and each key's) goes through it linearly and b_O through it joins the
bias; an MLP's output norm stays inside mlp_out (one part); the embedding part is the stored one (scaled for
Gemma, learned positions with OPT's offset); windows and soft-capped scores only change α, which is the run's
own (masked keys exactly 0). A final logit soft-cap (Gemma 2) is not linear: `actual` and `total` are the
logit difference before the cap (`final_softcap` says the cap).

Post-norm models (BERT) are refused: their residual stream is renormalised after every block, and a masked-LM
head passes it through a dense layer, a GELU and a LayerNorm before the unembedding, which no linear split
follows (MiniLM has no language-model head at all).
At a query position where a head's z was patched, z is not α @ v: that head's heads_by_source row is NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..arrays import readonly
from ..errors import EngineError, InputError
from ..model import Model
from ..trace import Trace
from . import frozen_norms as fn


@dataclass(frozen=True)
class LogitAttribution:
    position: int
    target: int
    baseline: int | None
    heads: np.ndarray  # [n_layers, n_heads]
    heads_by_source: np.ndarray  # [n_layers, n_heads, n_tokens]
    mlps: np.ndarray  # [n_layers]
    embed: float
    bias: float
    total: float  # the sum of every part
    actual: float  # the run's logit(target) − logit(baseline) at position, before any final soft-cap
    final_softcap: float = 0.0  # the model's final logit soft-cap (0: none); actual and total are before it


def check_position(trace: Trace, position: int) -> int:
    n = trace.n_tokens
    if not isinstance(position, int | np.integer) or not -n <= int(position) < n:
        raise InputError(f"position {position} is outside the text's {n} tokens (0..{n - 1}).")
    return int(position) % n


def check_token(cfg, token: int, what: str) -> int:
    if not isinstance(token, int | np.integer) or not 0 <= int(token) < cfg.d_vocab:
        raise InputError(f"the {what} token id {token} is not in {cfg.name}'s vocabulary (0..{cfg.d_vocab - 1}).")
    return int(token)


def readout(trace: Trace, position: int, target: int, baseline: int | None) -> tuple[torch.Tensor, float]:
    """(d = W_U[:, target] − W_U[:, baseline] [d_model] float64, b_U[target] − b_U[baseline])."""
    u = trace._weights.unembed
    d = u.W_U[:, target].double()
    b = 0.0 if u.b_U is None else float(u.b_U[target])
    if baseline is not None:
        d = d - u.W_U[:, baseline].double()
        b -= 0.0 if u.b_U is None else float(u.b_U[baseline])
    return d, b


def logit_difference(trace: Trace, position: int, target: int, baseline: int | None = None) -> float:
    """The run's logit(target) − logit(baseline) (or logit(target) alone) at position, from the final residual
    stream (before any final soft-cap)."""
    position = check_position(trace, position)
    d, b = readout(trace, position, target, baseline)
    return float(trace.resid_final_[position].double() @ d) + b


def pattern_row(trace: Trace, layer: int, position: int) -> torch.Tensor:
    """α of every head at query `position`: [n_heads, n] float64, exactly the run's (its scale, soft-cap, mask
    and window: a hidden key is exactly 0)."""
    return trace.pattern_rows(layer, slice(position, position + 1))[:, 0].double()


def value_readout(v_kv: torch.Tensor, W_O_g: torch.Tensor) -> torch.Tensor:
    """v_hj · (W_O[h] g) for every head and key: [n_heads, n] float64, from v_kv [n_kv_heads, n, d_head] and
    W_O_g [n_heads, d_head]."""
    n_kv = v_kv.shape[0]
    return torch.einsum("kne,kge->kgn", v_kv.double(), W_O_g.unflatten(0, (n_kv, -1))).flatten(0, 1)


@torch.inference_mode()
def logit_attribution(model: Model, trace: Trace, position: int, target: int,
                      baseline: int | None = None) -> LogitAttribution:
    """Every part's direct contribution to logit(target) − logit(baseline) at `position` (see the module)."""
    cfg, w = trace.config, trace._weights
    fn.check_linear(cfg, "Logit attribution")
    if w.unembed is None:
        raise EngineError(f"{cfg.name} has no language-model head: there are no logits to attribute.")
    if w.unembed.W_dense is not None or cfg.norm_placement == "post":
        raise EngineError(f"{cfg.name} renormalises its residual stream after every block and its masked-LM head "
                          "passes it through a dense layer, a GELU and a LayerNorm before the unembedding: not "
                          "linear, so its logits cannot be split into parts exactly.")
    position = check_position(trace, position)
    target = check_token(cfg, target, "target")
    baseline = None if baseline is None else check_token(cfg, baseline, "baseline")
    d, bias = readout(trace, position, target, baseline)
    g = d
    if w.ln_final is not None:
        x = trace.resid_last[position]
        g = fn.pull_back(d, w.ln_final, fn.scale(x, cfg), cfg)
        if w.ln_final.b is not None:
            bias += float(w.ln_final.b.double() @ d)
    L, H, n = cfg.n_layers, cfg.n_heads, trace.n_tokens
    dev = trace.device
    heads = torch.zeros(L, H, dtype=torch.float64, device=dev)
    by_source = torch.zeros(L, H, n, dtype=torch.float64, device=dev)
    mlps = torch.zeros(L, dtype=torch.float64, device=dev)
    for layer in range(L):  # pre-norm: every part reaches the final norm unchanged, read by the same g
        stored, block = trace.layers[layer], w.blocks[layer]
        mlps[layer] = stored["mlp_out"][position].double() @ g
        g_attn = g  # what the heads' sum is read by: g, or g seen through the output norm frozen at position
        if block.ln1_post is not None:
            z = stored["z"][:, position].double()  # [n_heads, d_head]
            attn_sum = torch.einsum("he,hed->d", z, block.attn.W_O.double())
            attn_sum = attn_sum + (0.0 if block.attn.b_O is None else block.attn.b_O.double())
            g_attn = fn.pull_back(g, block.ln1_post, fn.scale(attn_sum, cfg), cfg)
            if block.ln1_post.b is not None:
                bias += float(block.ln1_post.b.double() @ g)
        if block.attn.b_O is not None:
            bias += float(block.attn.b_O.double() @ g_attn)
        W_O_g = (block.attn.W_O.double() @ g_attn)  # [n_heads, d_head]: each head's read-out
        heads[layer] = (stored["z"][:, position].double() * W_O_g).sum(-1)
        on = trace.head_mask_[layer].to(dev, torch.float64)[:, None]
        by_source[layer] = pattern_row(trace, layer, position) * value_readout(stored["v_kv"], W_O_g) * on
        for head in trace.patch.get(layer, {}):
            if position in trace.patch[layer][head]:
                by_source[layer, head] = float("nan")
    embed = float(trace.resid_pre_at(0)[position].double() @ g)
    total = float(heads.sum() + mlps.sum()) + embed + bias
    return LogitAttribution(position=position, target=target, baseline=baseline, heads=readonly(heads),
                            heads_by_source=readonly(by_source), mlps=readonly(mlps), embed=embed, bias=bias,
                            total=total, actual=logit_difference(trace, position, target, baseline),
                            final_softcap=cfg.final_softcap)


def single_token(model: Model, text: str) -> int:
    """The id of the one token `text` is (as the tokenizer reads it inside a text, no special tokens added);
    InputError when it is empty or more than one token."""
    if not isinstance(text, str) or not text:
        raise InputError("type a token, e.g. “ Paris” (with its leading space).")
    with model._tokenizer_lock:
        ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        shown = " | ".join(model.readable(ids)) if ids else "nothing"
        raise InputError(f"“{text}” is not one token of {model.config.name}'s vocabulary: it reads as {len(ids)} "
                         f"tokens ({shown}). Type a single token.")
    return int(ids[0])
