"""Warm start: the server loads the default model (reading its verified weight cache) as soon as it starts, in a
background thread, so that its first visitor does not wait for it. replica.py starts it from the server's
lifespan (before any session connects) through `components.runs.warm_start`, which says what to load and what
to run after. A visitor who arrives during the load sees its progress (`follow`, called by
components/runs.get_model), then the model from the shared store.

Nothing here runs a Streamlit command: the thread has no session. The model goes into the same shared store
(`runs.model_store()`, an `st.cache_resource`) that every session uses.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Loading:
    """One warm-start load: its latest progress, and when it is over (loaded or failed)."""

    model: str
    fraction: float = 0.0
    message: str = "starting"
    started: float = field(default_factory=time.monotonic)
    seconds: float | None = None  # how long the load took, once it is over
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def update(self, fraction: float, message: str) -> None:
        self.fraction, self.message = fraction, message

    @property
    def state(self) -> str:
        return "loading" if not self.done.is_set() else "failed" if self.error else "ready"

    def status(self) -> dict:
        """For the replica's status JSON (cluster/status.py)."""
        return {"model": self.model, "state": self.state, "message": self.message,
                "seconds": round(self.seconds if self.seconds is not None else time.monotonic() - self.started, 1)}


_LOG = logging.getLogger(__name__)
_LOADS: dict[str, Loading] = {}
_LOCK = threading.Lock()


def current() -> Loading | None:
    """The server's warm-start load, if one was started."""
    with _LOCK:
        return next(iter(_LOADS.values()), None)


def start(model: str, load: Callable[[Callable[[float, str], None]], object],
          then: Callable[[object], None] = lambda model: None) -> Loading:
    """Begin the warm start of `model` in a background thread and return at once: load(progress) loads it (into
    the shared store), then(the model) gives the first visitor a head start (the default page's run). A second
    call gives the load already started."""
    with _LOCK:
        if _LOADS:
            return next(iter(_LOADS.values()))
        loading = _LOADS[model] = Loading(model)
    threading.Thread(target=_load, args=(loading, load, then), name="warm-start", daemon=True).start()
    return loading


def _load(loading: Loading, load: Callable[[Callable[[float, str], None]], object],
          then: Callable[[object], None]) -> None:
    """Load the model; then (the load is over for `follow` by then) the head start."""
    try:
        model = load(loading.update)
    except Exception as err:  # noqa: BLE001 - the first visitor then loads it and sees the reason
        loading.error = f"{type(err).__name__}: {err}"
        return
    finally:
        loading.seconds = time.monotonic() - loading.started
        loading.done.set()
    try:
        then(model)
    except Exception as err:  # noqa: BLE001 - a head start only: the visitor's own page does the same and reports
        _LOG.warning("warm start: the default page's run failed (%s: %s)", type(err).__name__, err)


def follow(model: str, progress: Callable[[float, str], None], poll_s: float = 0.1) -> None:
    """While the warm-start load of `model` runs, show its progress with `progress(fraction, message)` (in the
    caller's thread: a session's own progress bar); returns when it is over, or at once if there is none."""
    with _LOCK:
        loading = _LOADS.get(model)
    if loading is None:
        return
    shown = None
    while not loading.done.wait(poll_s):
        if (loading.fraction, loading.message) != shown:
            shown = (loading.fraction, loading.message)
            progress(*shown)
