"""Generations a server shares: a request (model, prompt, settings, switched-off heads) turned into a
Generation through the same RunCache as every run, with a cache key, a memory reservation for prompt + new
tokens, cancellation, and the tokens written so far for every visitor waiting for it."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

from ..generate import Generation, check_settings
from ..model import Model
from ..trace import Prefix
from .cache import RunCache, Waiting
from .memory import run_bytes

OnWriting = Callable[[Waiting, tuple[int, ...]], None]  # (where the request stands, token ids written so far)


@dataclass(frozen=True)
class GenerateSettings:
    """How to write (as model.generate takes it): greedy is temperature 0 with no top_k and no seed."""

    new_tokens: int
    temperature: float = 0.0
    top_k: int | None = None
    seed: int | None = None


class Progress:
    """The token ids each generation has written so far, by run key: appended by the runs' threads, read by any
    script waiting for one. Thread-safe; it keeps the most recent `max_runs` runs."""

    def __init__(self, max_runs: int = 64):
        self._lock = threading.Lock()
        self._written: OrderedDict[Hashable, list[int]] = OrderedDict()
        self._max_runs = max_runs

    def start(self, key: Hashable) -> None:
        """A run of key begins (again, after a cancelled one): nothing written yet."""
        with self._lock:
            self._written[key] = []
            self._written.move_to_end(key)
            while len(self._written) > self._max_runs:
                self._written.popitem(last=False)

    def add(self, key: Hashable, token_id: int) -> None:
        with self._lock:
            if key in self._written:
                self._written[key].append(token_id)

    def written(self, key: Hashable) -> tuple[int, ...]:
        with self._lock:
            return tuple(self._written.get(key, ()))


def generation_key(model: Model, text: str, settings: GenerateSettings, heads_off: Iterable[tuple[int, int]],
                   max_tokens: int | None) -> Hashable:
    return ("generate", model.config.name, model.source, text, settings, tuple(sorted(heads_off)), max_tokens)


def get_generation(cache: RunCache, progress: Progress, model: Model, text: str, settings: GenerateSettings, *,
                   heads_off: Iterable[tuple[int, int]] = (), max_tokens: int | None = None,
                   session: Hashable | None = None,
                   on_wait: OnWriting | None = None) -> Generation:
    """The generation of one request: cached, shared with a visitor who asked first, or written in a new run that
    reserves the memory of prompt + new tokens first. on_wait(waiting, token ids written so far) is called while
    it queues or writes (in the caller's thread; raising gives up, and a run nobody waits for stops). Bad
    settings raise InputError here, before anything is reserved."""
    heads_off = frozenset(heads_off)
    key = generation_key(model, text, settings, heads_off, max_tokens)
    ids, _, _ = model.tokenize(text, max_tokens)
    limit = min(model.config.max_tokens, max_tokens or model.config.max_tokens)
    check_settings(model, len(ids), settings.new_tokens, settings.temperature, settings.top_k, settings.seed, limit)

    def compute(cancel: Callable[[], bool], prefix: Prefix | None) -> Generation:  # a generation starts over
        progress.start(key)
        return model.generate(text, max_new_tokens=settings.new_tokens, temperature=settings.temperature,
                              top_k=settings.top_k, seed=settings.seed, head_mask=model.head_mask_without(heads_off),
                              max_tokens=max_tokens, on_token=lambda step, token_id: progress.add(key, token_id),
                              cancel=cancel)

    def waiting(w: Waiting) -> None:
        if on_wait is not None:
            on_wait(w, progress.written(key))

    return cache.get(key, compute, run_bytes(model.config, len(ids) + settings.new_tokens), session=session,
                     on_wait=waiting)
