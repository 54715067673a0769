"""Models and runs shared by every session of the server process: one model store and one trace cache."""

from __future__ import annotations

import streamlit as st

import engine
from components.labels import markdown_literal
from components.settings import Settings
from engine.serving.cache import TraceCache
from engine.serving.store import ModelStore


@st.cache_resource(show_spinner=False)
def model_store() -> ModelStore:
    return ModelStore(max_models=3)


@st.cache_resource(show_spinner=False)
def trace_cache(max_entries: int, max_mb: int) -> TraceCache:
    return TraceCache(max_entries, max_mb << 20)


def get_model(name: str, settings: Settings) -> engine.Model:
    """The shared model; the first load in a server process shows its progress (a cold start dequantises)."""
    store = model_store()

    def load(progress=None) -> engine.Model:
        return engine.load(name, device=settings.device, progress=progress, max_params=settings.max_params)

    if name in store:
        return store.get(name, load)
    slot = st.empty()  # the progress shows while loading and goes once the model is ready
    with slot.status(f"Loading {markdown_literal(name)}…", expanded=True):  # labels render Markdown
        bar = st.progress(0.0)

        def progress(fraction: float, message: str) -> None:
            bar.progress(min(max(fraction, 0.0), 1.0), text=markdown_literal(message))

        model = store.get(name, lambda: load(progress))
    slot.empty()
    return model


def get_trace(model: engine.Model, text: str, causal: bool | None, heads_off: frozenset[tuple[int, int]],
              settings: Settings) -> engine.Trace:
    """The run of `text` with this mask and these heads off, from the shared cache or computed once."""
    key = (model.config.name, model.source, text, causal, tuple(sorted(heads_off)), settings.max_tokens)

    def compute() -> engine.Trace:
        return model.run(text, causal=causal, head_mask=model.head_mask_without(heads_off),
                         max_tokens=settings.max_tokens)

    return trace_cache(settings.trace_cache_entries, settings.trace_cache_mb).get(key, compute)
