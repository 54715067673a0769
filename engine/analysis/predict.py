"""Next-token predictions of a trace, and how an intervention changed them."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..model import Model
from ..trace import Trace


@dataclass(frozen=True)
class Prediction:
    token_id: int
    token: str  # readable text of the token
    prob: float  # in this run
    base_prob: float | None  # in the unmodified run, when compared


def top_predictions(model: Model, trace: Trace, position: int = -1, k: int = 10,
                    base: Trace | None = None) -> list[Prediction]:
    """The k most likely next tokens after `position`; with `base`, each token's probability there too."""
    logits = trace.logits_at(position)  # [d_vocab]
    if logits is None:
        return []
    probs = torch.softmax(logits, dim=-1)
    base_probs = torch.softmax(base.logits_at(position), dim=-1) if base is not None else None
    top = probs.topk(k)
    ids = top.indices.tolist()
    tokens = model.readable(ids)
    return [Prediction(i, tok, float(p), float(base_probs[i]) if base_probs is not None else None)
            for i, tok, p in zip(ids, tokens, top.values.tolist(), strict=True)]
