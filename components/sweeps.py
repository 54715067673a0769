"""Patching sweeps of the Compare view, shared by every session of the server process.

A sweep is small (one or two numbers per patched cell) and takes seconds, so each runs once per key (the model,
both texts, both targets, the sweep, the followed token and the token limit) with a progress bar while it runs;
the patched runs themselves are not kept (engine.analysis.compare batches them).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

import streamlit as st

from engine.analysis.compare import Progress, Sweep

MAX_ENTRIES = 64


@st.cache_resource(show_spinner=False)
def _store() -> tuple[OrderedDict, threading.Lock]:
    return OrderedDict(), threading.Lock()


def cached(key: Hashable) -> Sweep | None:
    """The sweep under `key`, if it ran already."""
    store, lock = _store()
    with lock:
        if key in store:
            store.move_to_end(key)
        return store.get(key)


def get(key: Hashable, compute: Callable[[Progress], Sweep], label: str) -> Sweep:
    """The sweep under `key`: cached, or computed now by compute(progress) with a progress bar labelled `label`."""
    if (found := cached(key)) is not None:
        return found
    bar = st.progress(0.0, text=label)
    result = compute(lambda done, total: bar.progress(min(done / max(total, 1), 1.0), text=label))
    bar.empty()
    store, lock = _store()
    with lock:
        store[key] = result
        while len(store) > MAX_ENTRIES:
            store.popitem(last=False)
    return result
