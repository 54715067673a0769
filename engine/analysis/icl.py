"""The in-context learning check: next-token loss on the two copies of a repeated probe.

A model that copies from context predicts the second copy of random tokens far better than the first;
with its induction heads switched off the second copy's loss rises back towards the first's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..arrays import readonly
from ..errors import InputError
from ..model import Model
from ..trace import Trace
from .roles import Probe


@dataclass(frozen=True)
class HalfLosses:
    """Per-token next-token loss of one run of a probe, and its mean over each copy."""

    per_token: np.ndarray  # [n], −log p(token t | tokens < t) in nats, read at position t − 1; NaN at t = 0
    first: float  # mean over the first copy's tokens (those with a token before them)
    second: float  # mean over the second copy's tokens


@dataclass(frozen=True)
class ICLCheck:
    current: HalfLosses  # with the given head switches
    unmodified: HalfLosses  # every head on

    def storages(self) -> Iterator[tuple[int, int]]:
        """(id, bytes) of the arrays it holds, so a run cache can count it (engine/serving/cache.py)."""
        for half in (self.current, self.unmodified):
            yield id(half.per_token), half.per_token.nbytes


def token_losses(trace: Trace) -> np.ndarray:
    """[n]: cross-entropy of each token given the ones before it (NaN for token 0). Needs a causal run of a
    model with an LM head."""
    if not trace.causal:
        raise InputError("the next-token loss needs a causal run.")
    if trace.n_tokens < 2:
        raise InputError("the next-token loss needs at least two tokens.")
    logits = trace.logits_at(slice(0, trace.n_tokens - 1))  # [n - 1, d_vocab]
    if logits is None:
        raise InputError(f"{trace.config.name} has no LM head: there is no next-token loss.")
    log_probs = torch.log_softmax(logits.double(), dim=-1)  # [n - 1, d_vocab]
    following = torch.tensor(trace.token_ids[1:], device=log_probs.device)  # [n - 1]
    loss = -log_probs.gather(1, following[:, None])[:, 0]  # [n - 1]
    return readonly(torch.cat([torch.tensor([float("nan")], dtype=loss.dtype), loss.cpu()]))


def half_losses(trace: Trace, probe: Probe) -> HalfLosses:
    """The loss of each token of a probe run, and its mean over each copy."""
    if tuple(trace.token_ids) != tuple(probe.token_ids):
        raise InputError("the trace is not a run of this probe.")
    per_token = token_losses(trace)
    first = per_token[max(probe.first.start, 1): probe.first.stop]
    return HalfLosses(per_token=per_token, first=float(np.mean(first)), second=float(per_token[probe.second].mean()))


def icl_losses(model: Model, probe: Probe, head_mask: torch.Tensor | None = None,
               unmodified: Trace | None = None) -> ICLCheck:
    """Loss on each copy with the given head switches and with every head on. `unmodified`: an earlier run of
    the probe with every head on (e.g. `head_roles(model).trace`), used instead of running it again."""
    all_on = model.default_head_mask()
    if unmodified is None or not (torch.equal(unmodified.head_mask, all_on) and unmodified.causal
                                  and tuple(unmodified.token_ids) == tuple(probe.token_ids)):
        unmodified = model.run_ids(probe.token_ids, causal=True)
    current = model.run_ids(probe.token_ids, causal=True, head_mask=head_mask, reuse=unmodified)
    return ICLCheck(current=half_losses(current, probe), unmodified=half_losses(unmodified, probe))
