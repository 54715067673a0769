"""The numbers of the guided walk through the notes ("Follow the notes"), one function per step that needs more
than a trace lookup: the query of one token, the dot-product grid of a window of tokens, the weighted sum of the
values, and the next-token distribution under temperature, top-k and top-p with a seeded pick.

Long texts: the step figures show a window of at most WINDOW tokens around the chosen one (`window`); every
number of the chosen query (its scores, weights, Σ α v) is over all keys."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .. import sampling
from ..arrays import readonly
from ..model import Model
from ..trace import Trace
from ..transformer import norm

WINDOW = 24  # tokens a step figure shows at most


def window(n_tokens: int, token: int, size: int = WINDOW) -> tuple[int, int]:
    """(lo, hi): positions lo..hi-1, at most `size` of them, around `token` (as centred as the text allows)."""
    if n_tokens <= size:
        return 0, n_tokens
    lo = min(max(token - size // 2, 0), n_tokens - size)
    return lo, lo + size


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))


@dataclass(frozen=True)
class Embeddings:
    """Each token's vector entering block 0 (resid_pre of layer 0) in a window, and one pair's similarity."""

    lo: int
    vectors: np.ndarray  # [w, d_model]
    norms: np.ndarray  # [w]
    token: int
    other: int
    similarity: float  # cosine of the embeddings of `token` and `other`


def embeddings(trace: Trace, token: int, other: int, lo: int, hi: int) -> Embeddings:
    e = trace["resid_pre", 0].cpu()  # [n, d_model]
    return Embeddings(lo=lo, vectors=readonly(e[lo:hi]), norms=readonly(e[lo:hi].norm(dim=-1)), token=token,
                      other=other, similarity=cosine(e[token].numpy(), e[other].numpy()))


@dataclass(frozen=True)
class Query:
    """What W_Q of one head does to one token: x (the block's normed input) -> x W_Q[h] + b_Q -> (rotary) q."""

    x: np.ndarray  # [d_model]: what W_Q multiplies (after the norm in a pre-norm model)
    W_Q_shape: tuple[int, int]  # (d_model, d_head)
    q_linear: np.ndarray  # [d_head]: x W_Q[h] + b_Q, before any rotary position encoding
    q: np.ndarray  # [d_head]: the query as attention uses it (trace's q, after rotary where the model has it)
    rotary: bool


def query(model: Model, trace: Trace, layer: int, head: int, token: int) -> Query:
    cfg = model.config
    w = model._weights.blocks[layer]
    x = trace["resid_pre", layer][token]  # [d_model]
    if cfg.norm_placement == "pre":
        x = norm(x.to(model.device), w.ln1, cfg).cpu()
    W_Q = w.attn.W_Q[head].cpu()  # [d_model, d_head]
    q_linear = x @ W_Q + (w.attn.b_Q[head].cpu() if w.attn.b_Q is not None else 0)  # [d_head]
    return Query(x=readonly(x), W_Q_shape=tuple(W_Q.shape), q_linear=readonly(q_linear),
                 q=readonly(trace["q", layer, head][token]), rotary=cfg.positions == "rotary")


@dataclass(frozen=True)
class Grid:
    """One head's dot products, mask and softmax on a window of tokens (query rows, key columns) and the chosen
    query's whole row."""

    lo: int
    hi: int
    d_head: int
    dots: np.ndarray  # [w, w] q·k
    scores: np.ndarray  # [w, w] q·k / √d_head
    masked: np.ndarray  # bool [w, w], True where the mask hides the key from the query
    pattern: np.ndarray  # [w, w] the softmax weights (over all keys: a window's row sums to ≤ 1)
    row_scores: np.ndarray  # [n] the chosen query's q·k / √d_head
    row_masked: np.ndarray  # bool [n]
    row_weights: np.ndarray  # [n] the chosen query's weights; they sum to 1

    @property
    def n_entries(self) -> int:
        """Entries of the whole pattern: the context size squared."""
        return len(self.row_scores) ** 2


def grid(trace: Trace, layer: int, head: int, token: int, lo: int, hi: int) -> Grid:
    q, k = trace["q", layer, head], trace["k", layer, head]  # [n, d_head] each
    d_head = q.shape[-1]
    dots = q[lo:hi] @ k[lo:hi].T  # [w, w]
    rows = slice(lo, hi)
    row = slice(token, token + 1)
    return Grid(lo=lo, hi=hi, d_head=d_head, dots=readonly(dots), scores=readonly(dots / math.sqrt(d_head)),
                masked=trace.masked(rows)[:, lo:hi].cpu().numpy(),
                pattern=readonly(trace.pattern_rows(layer, rows, head)[:, lo:hi]),
                row_scores=readonly(trace.scores_rows(layer, row, head)[0]),
                row_masked=trace.masked(row)[0].cpu().numpy(),
                row_weights=readonly(trace.pattern_rows(layer, row, head)[0]))


@dataclass(frozen=True)
class WeightedValues:
    """The chosen query's Σ_j α_j v_j (in d_head) and its image Σ_j α_j v_j W_O[h] = Δe (in d_model)."""

    values: np.ndarray  # [n, d_head]: every token's value vector v_j = x_j W_V + b_V
    weights: np.ndarray  # [n]: α_j (0 for a head switched off)
    z: np.ndarray  # [d_head]: Σ_j α_j v_j
    delta: np.ndarray  # [d_model]: z W_O[h], the head's Δe at the query
    error: float  # max |delta − trace's head_out| (float rounding)


def weighted_values(model: Model, trace: Trace, layer: int, head: int, token: int) -> WeightedValues:
    v = trace["v", layer, head].double()  # [n, d_head]
    on = float(trace.head_mask[layer, head])
    weights = trace.pattern_rows(layer, slice(token, token + 1), head)[0].double() * on  # [n]
    z = weights @ v  # [d_head]
    delta = z @ model._weights.blocks[layer].attn.W_O[head].double().cpu()  # [d_model]
    error = float((delta - trace["head_out", layer, head][token].double()).abs().max())
    return WeightedValues(values=readonly(v), weights=readonly(weights), z=readonly(z), delta=readonly(delta),
                          error=error)


@dataclass(frozen=True)
class Block:
    """What the rest of the block and the later layers do at one token: ‖attn_out‖, ‖mlp_out‖ and the residual's
    size after every block."""

    attn_norm: float
    mlp_norm: float
    resid_norms: np.ndarray  # [n_layers + 1]: ‖resid‖ at the embedding and after each block


def block(trace: Trace, layer: int, token: int) -> Block:
    stream = trace.residual_stream()[:, token]  # [n_layers + 1, d_model]
    return Block(attn_norm=float(trace["attn_out", layer][token].norm()),
                 mlp_norm=float(trace["mlp_out", layer][token].norm()), resid_norms=readonly(stream.norm(dim=-1)))


@dataclass(frozen=True)
class NextToken:
    """The next-token distribution after one position, plain (temperature 1) and as the sampling settings make it,
    and the token a seeded draw picks."""

    ids: tuple[int, ...]  # the k most likely tokens (by logit: the same order under every temperature)
    probs: np.ndarray  # [k] softmax(logits)
    sampled_probs: np.ndarray  # [k] the probabilities under the settings
    kept: int  # tokens with a non-zero probability under the settings
    picked: int  # the token id a draw with the seed picks (greedy at temperature 0)
    picked_prob: float  # its probability under the settings
    greedy: int  # the most likely token id


def next_token(model: Model, trace: Trace, position: int, temperature: float, top_k: int | None = None,
               top_p: float | None = None, seed: int = 0, k: int = 10) -> NextToken | None:
    """None for a model without a language-model head. Raises InputError for unusable settings."""
    logits = trace.logits_at(position)  # [d_vocab]
    if logits is None:
        return None
    sampling.check(temperature, top_k, top_p, logits.shape[-1])
    logits = logits.cpu()
    after = sampling.distribution(logits, temperature, top_k, top_p)  # [d_vocab] float64
    picked = sampling.choose(logits, temperature, top_k, torch.Generator().manual_seed(seed), top_p)
    ids = logits.topk(k).indices
    return NextToken(ids=tuple(ids.tolist()), probs=readonly(torch.softmax(logits.double(), -1)[ids]),
                     sampled_probs=readonly(after[ids]), kept=int((after > 0).sum()), picked=picked,
                     picked_prob=float(after[picked]), greedy=int(logits.argmax()))
