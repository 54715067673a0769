"""What a visitor sees while a run waits for memory or computes: a notice that follows the queue, or, while the
model writes, a progress bar and the text so far."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import streamlit as st

from components.labels import readable_text
from engine.errors import RateLimited
from engine.serving.cache import Waiting
from engine.serving.generation import OnWriting

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


@contextmanager
def show_writing(what: str, prompt: Callable[[], str], n_new: int,
                 readable: Callable[[Sequence[int]], list[str]]) -> Iterator[OnWriting]:
    """Yields an on_wait(waiting, ids written so far) callback for a generation: a progress bar named `what` and
    the prompt (read once, when first shown) with the tokens written so far, literally; both go when it is ready."""
    bar, text = st.empty(), st.empty()
    shown: list[str] = []  # the prompt's text, once read

    def on_wait(w: Waiting, written: tuple[int, ...]) -> None:
        if w.state == "queued":
            bar.info(describe(w))
            return
        shared = " (another visitor asked for the same text: it is shared)" if w.shared else ""
        bar.progress(len(written) / n_new, text=f"{what}: {len(written)} of {n_new} tokens{shared}")
        shown[:] = shown or [readable_text(prompt())]
        text.code(shown[0] + readable_text("".join(readable(written))), language=None, wrap_lines=True)

    try:
        yield on_wait
    finally:
        bar.empty()
        text.empty()
