"""Models and runs shared by every session of the server process: one model store and one run cache (which holds
generations, patching sweeps and role probes too), under a memory budget that counts the measured memory."""

from __future__ import annotations

import weakref
from collections.abc import Callable

import streamlit as st

import engine
from components import settings as settings_
from components import state, visitor
from components import warm_start as warm_start_
from components.labels import markdown_literal
from components.settings import Settings
from components.waiting import show_waiting
from engine.generate import Generation
from engine.serving import generation, memory, runs
from engine.serving.cache import RunCache
from engine.serving.store import ModelStore

ARENAS = 2  # glibc malloc arenas (default: 8 per core); the same as MALLOC_ARENA_MAX=2


@st.cache_resource(show_spinner=False)
def model_store() -> ModelStore:
    return ModelStore(max_models=3)


@st.cache_resource(show_spinner=False)
def run_cache(memory_mb: int, max_entries: int, runs_per_minute: int) -> RunCache:
    """The server's runs, sweeps, probes and generations: finished and in flight, under one memory budget that
    counts the server's measured memory too (engine/serving/cache.py; README, "Memory budget")."""
    memory.limit_arenas(ARENAS)  # freed memory of one run's thread serves the next run's
    store = model_store()
    return RunCache(memory_mb << 20, max_entries, runs_per_minute, resident=memory.resident_bytes,
                    outside=store.nbytes, trim=memory.trim)


def shared_cache(settings: Settings) -> RunCache:
    """The server's one run cache under the operator's settings."""
    return run_cache(settings.memory_mb, settings.trace_cache_entries, settings.runs_per_minute)


def load(name: str, settings: Settings, progress=None) -> engine.Model:
    """Load a model under the operator's limits and policy (not shared: `get_model` is)."""
    return engine.load(name, progress=progress, **settings.load_options())


def warm_start(then: Callable[[], object] = lambda: None) -> warm_start_.Loading:
    """As the server starts: load the default model into the shared store in the background (reading its verified
    weight cache), then run the default page's text once through the run cache and call then() (replica.py
    imports the views there), so that a first visitor finds the model loaded and its run computed or in flight."""
    options = settings_.load()
    default = state.AppState()

    def head_start(model: engine.Model) -> None:
        cache = shared_cache(options)
        runs.get_trace(cache, model, default.text, causal=default.causal, heads_off=default.heads_off,
                       max_tokens=options.max_tokens)
        then()

    return warm_start_.start(default.model, lambda progress: model_store().get(
        default.model, lambda: load(default.model, options, progress)), head_start)


def get_model(name: str, settings: Settings) -> engine.Model:
    """The shared model; the first load in a server process shows its progress (a cold start dequantises), also
    to visitors who arrive while the server loads it at its start (components/warm_start.py)."""
    store = model_store()
    if name in store:
        return store.get(name, lambda: load(name, settings))
    slot = st.empty()  # the progress shows while loading and goes once the model is ready
    with slot.status(f"Loading {markdown_literal(name)}…", expanded=True):  # labels render Markdown
        bar = st.progress(0.0)

        def progress(fraction: float, message: str) -> None:
            bar.progress(min(max(fraction, 0.0), 1.0), text=markdown_literal(message))

        warm_start_.follow(name, progress)  # the server's own load of it, begun at its start, if one is running
        model = store.get(name, lambda: load(name, settings, progress))
    slot.empty()
    return model


def get_trace(model: engine.Model, text: str, causal: bool | None, heads_off: frozenset[tuple[int, int]],
              settings: Settings, patch: dict | None = None) -> engine.Trace:
    """The run of `text` with this mask, these heads off and this patch ({(layer, head): {position: z}}): cached,
    shared with a visitor who asked first, or computed once (resuming from the unmodified run's layers); a notice
    follows it while it queues or runs."""
    cache = shared_cache(settings)
    with show_waiting() as on_wait:
        return runs.get_trace(cache, model, text, causal=causal, heads_off=heads_off, patch=patch,
                              max_tokens=settings.max_tokens, session=visitor.key(settings), on_wait=on_wait)


def later(model_name: str, model: engine.Model, trace: engine.Trace, text: str, causal: bool | None,
          heads_off: frozenset[tuple[int, int]], settings: Settings, patch: dict | None = None
          ) -> Callable[[], engine.Trace]:
    """This run again, later and outside the page's script (a download built when it is clicked), without keeping
    it alive meanwhile: a page left open must not hold a run outside the server's memory budget. The callable
    gives the trace itself while the server still keeps it, else the same request through the run cache (cached,
    or computed again under the budget, queued like any run)."""
    trace_ref, model_ref = weakref.ref(trace), weakref.ref(model)

    def again() -> engine.Trace:
        if (kept := trace_ref()) is not None:
            return kept
        loaded = model_ref() or model_store().get(model_name, lambda: load(model_name, settings))
        cache = shared_cache(settings)
        return runs.get_trace(cache, loaded, text, causal=causal, heads_off=heads_off, patch=patch,
                              max_tokens=settings.max_tokens)

    return again


@st.cache_resource(show_spinner=False)
def generation_progress() -> generation.Progress:
    """The tokens every generation in flight has written so far, for any visitor waiting for it."""
    return generation.Progress()


def get_generation(model: engine.Model, text: str, settings: generation.GenerateSettings,
                   heads_off: frozenset[tuple[int, int]], app_settings: Settings,
                   on_wait: generation.OnWriting) -> Generation:
    """The generation after `text` with these settings and heads off, through the same cache and memory budget as
    every run: cached, shared, or written in a new run; on_wait(waiting, ids written so far) while it runs."""
    cache = shared_cache(app_settings)
    return generation.get_generation(cache, generation_progress(), model, text, settings, heads_off=heads_off,
                                     max_tokens=app_settings.max_tokens, session=visitor.key(app_settings),
                                     on_wait=on_wait)
