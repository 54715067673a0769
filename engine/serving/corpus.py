"""Corpus jobs a server shares: head statistics over a corpus, or one head's queries and keys, through the same
RunCache as every run (a cache key per model, corpus, token limit and head; a memory reservation sized in
advance; one job per visitor computing; cancelled when nobody waits), with the texts done so far for everyone
waiting. On Ray the server keeps only the results: the batches' working memory is the cluster's."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from .. import corpus as _corpus
from ..model import Model
from ..trace import Prefix
from .cache import RunCache, Waiting


@dataclass(frozen=True)
class Done:
    texts: int
    total: int
    seconds: float  # since the job started

    @property
    def seconds_left(self) -> float | None:
        """Time left at the rate so far, None before the first batch."""
        return self.seconds * (self.total - self.texts) / self.texts if self.texts else None


class Progress:
    """Texts done by each corpus job in flight, by key (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[Hashable, tuple[int, int, float]] = {}

    def set(self, key: Hashable, done: int, total: int) -> None:
        with self._lock:
            started = self._jobs.get(key, (0, 0, time.monotonic()))[2] if done else time.monotonic()
            self._jobs[key] = (done, total, started)

    def get(self, key: Hashable) -> Done | None:
        with self._lock:
            if key not in self._jobs:
                return None
            done, total, started = self._jobs[key]
            return Done(done, total, time.monotonic() - started)


@dataclass(frozen=True)
class Job:
    """What a corpus job needs besides the model: where it runs and the sizes it reserves."""

    max_tokens: int
    ray_address: str = ""
    model_name: str = ""  # what Ray workers load (the server's model name)
    load_options: tuple = ()  # (name, value) pairs for engine.load on the workers


def key_of(model: Model, texts: _corpus.Corpus, job: Job, head: tuple[int, int] | None) -> Hashable:
    return ("corpus", model.config.name, model.source, texts.digest, job.max_tokens, head)


def need_bytes(model: Model, texts: _corpus.Corpus, job: Job, head: tuple[int, int] | None) -> int:
    """Bytes reserved: what the job keeps (sized from the texts' lengths in characters, a token per character at
    most) and, in the server process, one batch's working memory."""
    cfg = model.config
    n_tokens = sum(min(len(t) + 8, job.max_tokens) for t in texts.texts)
    kept = (_corpus.stats_bytes(cfg.n_layers, cfg.n_heads, len(texts)) if head is None
            else _corpus.qk_bytes(cfg.d_head, n_tokens))
    if job.ray_address:
        return kept + (64 << 20)  # the results arrive batch by batch
    from ..corpus.run import MAX_BATCH_TOKENS

    return kept + _corpus.work_bytes(model, MAX_BATCH_TOKENS, job.max_tokens)


def get(cache: RunCache, progress: Progress, model: Model, texts: _corpus.Corpus, job: Job,
        head: tuple[int, int] | None = None, *, session: Hashable | None = None,
        on_wait: Callable[[Waiting, Done | None], None] | None = None):
    """CorpusStats (head None) or JointQK of head (layer, head): cached, shared, or computed in a new job."""
    key = key_of(model, texts, job, head)
    options = dict(job.load_options)

    def compute(cancel: Callable[[], bool], prefix: Prefix | None):
        progress.set(key, 0, len(texts))
        common = dict(progress=lambda done, total: progress.set(key, done, total), cancel=cancel,
                      ray_address=job.ray_address or None, model_name=job.model_name or None, load_options=options)
        if head is None:
            return _corpus.corpus_stats(model, texts, job.max_tokens, **common)
        return _corpus.corpus_qk(model, texts, head[0], head[1], job.max_tokens, **common)

    def waiting(w: Waiting) -> None:
        if on_wait is not None:
            on_wait(w, progress.get(key))

    return cache.get(key, compute, need_bytes(model, texts, job, head), session=session, on_wait=waiting)
