"""How a next token is picked from logits: greedy, or sampled from softmax(logits / temperature) restricted to the
top k tokens and to the nucleus (top p). One module for generation and for the notes' step 11."""

from __future__ import annotations

import math

import torch

from .errors import InputError


def check(temperature, top_k, top_p, d_vocab: int) -> None:
    """Raise InputError naming the first setting that is not usable."""
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not math.isfinite(temperature) \
            or temperature < 0:
        raise InputError(f"temperature must be a finite number ≥ 0 (0 = greedy), not {temperature!r}.")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= d_vocab):
        raise InputError(f"top_k must be None or a whole number from 1 to {d_vocab}, not {top_k!r}.")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, int | float)
                              or not 0 < top_p <= 1):
        raise InputError(f"top_p must be None or a number in (0, 1], not {top_p!r}.")


def distribution(logits: torch.Tensor, temperature: float, top_k: int | None = None,
                 top_p: float | None = None) -> torch.Tensor:
    """float64 [d_vocab]: the probabilities a token is picked with. Temperature 0: all on the most likely token.
    Otherwise softmax(logits / T) over the top_k most likely tokens (ties at the k-th kept), then over the
    smallest set of the most likely whose probabilities reach top_p (at least one token), renormalised."""
    if temperature == 0:
        return torch.zeros_like(logits, dtype=torch.float64).index_fill_(0, logits.argmax().reshape(1), 1.0)
    scaled = (logits.double() - logits.max()) / temperature  # shifted: a tiny temperature gives -inf, never inf
    if top_k is not None:
        kth = scaled.topk(top_k).values[-1]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    probs = torch.softmax(scaled, dim=-1)
    if top_p is not None and top_p < 1:
        ordered, order = probs.sort(descending=True)
        before = ordered.cumsum(0) - ordered  # probability of the more likely tokens
        drop = torch.zeros_like(probs, dtype=torch.bool).scatter_(0, order, before >= top_p)
        probs = torch.softmax(scaled.masked_fill(drop, float("-inf")), dim=-1)
    return probs


def choose(logits: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None,
           top_p: float | None = None) -> int:
    """Greedy (temperature 0: the most likely token) or one draw from `distribution` with the generator."""
    if temperature == 0:
        return int(logits.argmax())
    probs = distribution(logits, temperature, top_k, top_p)
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))
