"""Attention Explorer: Streamlit entry. Wires the sidebar, the shared runs, the tabs and the page's link; the
state is components/state.py, the tabs are components/views/, and every number comes from engine/."""

# ruff: noqa: E402 - the page asks the browser for Plotly before the slow imports below (components/chart_prefetch)
from __future__ import annotations

import contextlib
import time

import streamlit as st

from components import chart_prefetch

st.set_page_config(page_title="Attention Explorer", page_icon="🔍", layout="wide")
chart_prefetch.request()

import engine
from components import content, patching, recovery, runs, sessions, settings, sidebar, state, waiting
from components.labels import markdown_literal
from components.views.context import ViewContext
from components.views.registry import SCHEMA, VIEWS

SETTINGS = settings.load()


def run_text(model: engine.Model, text: str, s: state.AppState
             ) -> tuple[engine.Trace, engine.Trace | None, patching.Applied]:
    """The run the state asks for and, while a mask, head switch or patch is active, the unmodified run beside it."""
    applied = patching.prepare(model, text, s, SETTINGS)
    trace = runs.get_trace(model, text, s.causal, s.heads_off, SETTINGS, patch=applied.patch)
    intervened = bool(s.heads_off) or applied.patch is not None or (
        s.causal is not None and s.causal != model.config.causal)
    base = runs.get_trace(model, text, None, frozenset(), SETTINGS) if intervened else None
    return trace, base, applied


def last_view(model: engine.Model, s: state.AppState) -> tuple | None:
    """(text, state, trace, base, applied patch) of the session's last view of this model, from the cache; None
    if it is gone."""
    last = state.last_good_view()
    if last is None or last[1].model != s.model:
        return None
    with contextlib.suppress(engine.EngineError):
        return (*last, *run_text(model, *last))
    return None


def notices(model: engine.Model, trace: engine.Trace, s: state.AppState, applied: patching.Applied) -> None:
    if trace.truncated:
        st.info(f"The text has {trace.n_tokens_in_text:,} tokens; the first {trace.n_tokens:,} were used "
                f"(limit: {min(SETTINGS.max_tokens, model.config.max_tokens):,}).")
    cfg = model.config
    st.caption(markdown_literal(
        f"{cfg.name}: {cfg.n_layers} layers × {cfg.n_heads} heads, {trace.n_tokens} tokens, "
        f"mask: {'causal' if trace.causal else 'none'}, {len(s.heads_off)} head(s) switched off"
        + (f", {patching.heads_text(s.patch.heads, cfg.n_heads)} patched" if applied.patch else "")))
    patching.notice(applied)


def tabs(ctx: ViewContext) -> None:
    """One tab per registered view; only the open tab runs (on_change="rerun"), so a rerun pays for what the
    visitor is looking at."""
    containers = st.tabs([view.label for view in VIEWS], key=state.KEYS["tab"], on_change="rerun")
    for view, container in zip(VIEWS, containers, strict=True):
        if container.open:
            with container:
                view.module.render(ctx)


def main() -> None:
    sessions.release_closed()  # what closed pages left in Streamlit's runtime (components/sessions.py)
    state.init(st.query_params.to_dict(), SETTINGS, SCHEMA)
    recovery.rerun_on_reconnect()  # after its server goes away, the page re-runs on the next one from its link
    st.sidebar.title("Attention Explorer")
    model = sidebar.choose_model(SETTINGS, state.current(SCHEMA).model)
    text = sidebar.sentence(SETTINGS)
    sidebar.controls(model.config, state.current(SCHEMA))
    s = state.current(SCHEMA)
    if not text.strip():
        last = state.last_good_text()
        st.warning("The sentence is empty: type something to see its attention."
                   + (" Showing the last sentence that ran." if last else ""))
        text = last or content.DEFAULT_SENTENCE
    try:
        trace, base, applied = run_text(model, text, s)
    except engine.RateLimited as err:  # past this visitor's cap: the last view that ran stays (from the cache)
        last = last_view(model, s)
        st.warning(markdown_literal(waiting.rate_limited(err, showing_last=last is not None)))
        if last is None:
            return
        text, s, trace, base, applied = last
    except engine.EngineError as err:
        st.error(markdown_literal(f"This text could not be run: {err}"))
        return
    state.remember_good_view(text, s)
    notices(model, trace, s, applied)
    tabs(ViewContext(model=model, trace=trace, base=base, state=s, schema=SCHEMA, settings=SETTINGS,
                     run=lambda other, causal: runs.get_trace(model, other, causal, frozenset(), SETTINGS),
                     trace_later=runs.later(s.model, model, trace, text, s.causal, s.heads_off, SETTINGS,
                                            applied.patch)))
    if not state.write_link(state.current(SCHEMA), SETTINGS):
        st.sidebar.caption("This sentence is too long to keep in the page's link.")


started = time.perf_counter()
try:
    main()
finally:
    chart_prefetch.clear()
st.session_state.server_ms = (time.perf_counter() - started) * 1000  # read by bench/bench_app.py
