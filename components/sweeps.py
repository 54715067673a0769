"""Patching sweeps of the Compare view, through the server's run cache like every heavy computation.

A sweep runs once per key (the model, both texts, both targets, the sweep, the followed token and the token
limit): it reserves its memory under the budget first (engine.serving.memory.sweep_bytes), a second visitor
asking the same waits for the first computation (single flight), and each new one counts toward its visitor's
caps. Its result is small (one or two numbers per patched cell) and stays cached with the runs; the patched runs
themselves are not kept (engine.analysis.compare batches them). A progress bar follows it for every visitor
waiting for it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable

import streamlit as st

from components import runs, visitor
from components.settings import Settings
from components.waiting import describe
from engine.analysis.compare import Progress, Sweep
from engine.errors import RunCancelled


class _Done:
    """(work done, work in all) of each sweep in flight, by key: written by its thread, read by its waiters."""

    def __init__(self):
        self._lock, self._done = threading.Lock(), {}

    def set(self, key: Hashable, done: int, total: int) -> None:
        with self._lock:
            self._done[key] = (done, total)

    def fraction(self, key: Hashable) -> float:
        with self._lock:
            done, total = self._done.get(key, (0, 1))
        return min(done / max(total, 1), 1.0)

    def drop(self, key: Hashable) -> None:
        with self._lock:
            self._done.pop(key, None)


@st.cache_resource(show_spinner=False)
def _progress() -> _Done:
    return _Done()


def cached(key: Hashable, settings: Settings) -> Sweep | None:
    """The sweep under `key`, if it ran already."""
    return runs.shared_cache(settings).peek(("sweep", key))


def get(key: Hashable, compute: Callable[[Progress], Sweep], label: str, need_bytes: int, settings: Settings
        ) -> Sweep:
    """The sweep under `key`: cached, shared with a visitor who asked first, or computed by compute(progress) in
    a new computation that reserves need_bytes first; a progress bar labelled `label` while it runs."""
    key, done = ("sweep", key), _progress()
    bar = st.empty()

    def work(cancel: Callable[[], bool], prefix) -> Sweep:
        def progress(work_done: int, total: int) -> None:
            if cancel():
                raise RunCancelled("nobody waits for this sweep any more.")
            done.set(key, work_done, total)
        try:
            return compute(progress)
        finally:
            done.drop(key)

    def on_wait(w) -> None:
        if w.state == "queued":
            bar.info(describe(w))
        else:
            bar.progress(done.fraction(key), text=label)

    try:
        return runs.shared_cache(settings).get(key, work, need_bytes, session=visitor.key(settings), on_wait=on_wait)
    finally:
        bar.empty()
