"""Warm start: the server loads the default model (reading its verified weight cache) as soon as it starts, in a
background thread, so that its first visitor does not wait for it. replica.py starts it from the server's
lifespan (before any session connects). A visitor who arrives during the load sees its progress
(`follow`, called by components/runs.get_model), then the model from the shared store.

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


def start(model: str | None = None) -> Loading:
    """Begin loading `model` (default: the app's default model) under the operator's settings in a background
    thread; returns at once. A second call gives the load already started."""
    with _LOCK:
        if _LOADS:
            return next(iter(_LOADS.values()))
        if model is None:
            from engine import EMBEDDED  # the app's default model (components.state.DEFAULT_MODEL) is the first

            model = next(iter(EMBEDDED))
        loading = _LOADS[model] = Loading(model)
    threading.Thread(target=_load, args=(loading,), name="warm-start", daemon=True).start()
    return loading


def _load(loading: Loading) -> None:
    """Load the model into the shared store; then (the load is over for `follow` by then) run the default view's
    text once through the shared run cache and import the views, so that a first visitor's default page finds
    its run computed (or joins it: one run per request in flight) and the page's modules imported."""
    try:
        from components import runs, settings, state

        options = settings.load()
        model = runs.model_store().get(loading.model, lambda: runs.load(loading.model, options, loading.update))
    except Exception as err:  # noqa: BLE001 - the first visitor then loads it and sees the reason
        loading.error = f"{type(err).__name__}: {err}"
        return
    finally:
        loading.seconds = time.monotonic() - loading.started
        loading.done.set()
    try:
        from engine.serving import runs as serving

        view = state.AppState(model=loading.model)
        cache = runs.run_cache(options.memory_mb, options.trace_cache_entries, options.runs_per_minute)
        serving.get_trace(cache, model, view.text, causal=view.causal, heads_off=view.heads_off,
                          max_tokens=options.max_tokens)
        import components.views.registry  # noqa: F401 - every view module, as app.py imports them
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
