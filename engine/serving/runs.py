"""Runs a server shares: one function that turns a request (model, text, mask, switched-off heads, patch)
into a trace through the RunCache, with a cache key, a memory estimate, and reuse of unchanged layers."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable

import torch

from ..model import Model
from ..trace import Prefix, Trace
from .cache import RunCache, Waiting
from .memory import run_bytes

PatchKey = tuple[tuple[int, int, int, bytes], ...]  # (layer, head, position, z as float32 bytes), sorted


def patch_key(patch: dict | None) -> PatchKey:
    """A hashable form of a patch {(layer, head): {position: z}}."""
    if not patch:
        return ()
    return tuple(sorted((int(layer), int(head), int(pos), torch.as_tensor(z).float().cpu().numpy().tobytes())
                        for (layer, head), at in patch.items() for pos, z in at.items()))


def run_key(model: Model, text: str, causal: bool | None, heads_off: Iterable[tuple[int, int]],
            max_tokens: int | None, patch: dict | None = None) -> Hashable:
    mask = model.config.causal if causal is None else bool(causal)
    return (model.config.name, model.source, text, mask, tuple(sorted(heads_off)), max_tokens, patch_key(patch))


def get_trace(cache: RunCache, model: Model, text: str, *, causal: bool | None = None,
              heads_off: Iterable[tuple[int, int]] = (), patch: dict | None = None, max_tokens: int | None = None,
              session: Hashable | None = None, on_wait: Callable[[Waiting], None] | None = None) -> Trace:
    """The trace of one request, from the cache or a new run. A new run with heads switched off or a patch
    resumes from the cached run of the same text and mask without them, computing only the layers from the
    first one that differs."""
    heads_off = frozenset(heads_off)
    key = run_key(model, text, causal, heads_off, max_tokens, patch)
    base = None
    if heads_off or patch:
        base = cache.peek(run_key(model, text, causal, (), max_tokens))
    ids, _, _ = model.tokenize(text, max_tokens)  # bad text fails here, before anything is reserved

    def compute(cancel: Callable[[], bool], prefix: Prefix | None) -> Trace:
        return model.run(text, causal=causal, head_mask=model.head_mask_without(heads_off), max_tokens=max_tokens,
                         patch=patch, reuse=prefix or base, cancel=cancel)

    return cache.get(key, compute, run_bytes(model.config, len(ids)), session=session, on_wait=on_wait)
