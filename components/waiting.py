"""What a visitor sees while a run waits for memory or computes: a notice that follows the queue."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import streamlit as st

from engine.errors import RateLimited
from engine.serving.cache import Waiting

SHOW_AFTER_S = 0.5  # quick runs show nothing


def describe(w: Waiting) -> str:
    if w.state == "queued":
        ahead = "next to start" if w.position == 1 else f"number {w.position} of {w.queued} in the queue"
        return (f"Queued: the server's memory for runs is in use, so this run waits its turn ({ahead}, "
                f"{w.seconds:.0f} s so far). It starts by itself; you can keep exploring meanwhile.")
    shared = " (another visitor asked for the same run: it is shared)" if w.shared else ""
    return f"Computing this run… {w.seconds:.0f} s{shared}"


def rate_limited(err: RateLimited, showing_last: bool) -> str:
    """The notice for a visitor past the server's cap on new runs per minute."""
    return f"Slow down: {err}" + (" Showing the last view that ran." if showing_last else "")


@contextmanager
def show_waiting() -> Iterator[Callable[[Waiting], None]]:
    """Yields an on_wait callback that keeps one notice up to date; the notice goes when the run is ready."""
    slot = st.empty()

    def on_wait(w: Waiting) -> None:
        if w.seconds >= SHOW_AFTER_S or w.state == "queued":
            slot.info(describe(w))  # a Streamlit call: it is also where a newer request interrupts this one

    try:
        yield on_wait
    finally:
        slot.empty()
