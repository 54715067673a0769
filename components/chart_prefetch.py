"""The first chart sooner: a session's first run starts with an empty, invisible Plotly chart, so that the browser
loads Plotly's script (the page's largest, 4.7 MB, which took a 2-core machine's Chromium ~2 s to load and start)
while the server imports the engine, loads the model and runs the text, not after them. app.py calls `request`
before its own imports and `clear` at the end of the run. Figures: README, "The first visitor does not wait"."""

from __future__ import annotations

import importlib

import plotly.graph_objects as go
import streamlit as st

_SLOT = "_chart_prefetch_slot"  # this run's placeholder, until `clear`
_DONE = "_chart_prefetch_done"
KEY = "chart_prefetch"  # the empty chart's element key (tests that count charts leave it out)
EMPTY = {"data": [{"type": "scatter", "x": [], "y": [], "hoverinfo": "skip"}],
         "layout": {"height": 10, "margin": {"l": 0, "r": 0, "t": 0, "b": 0}, "xaxis": {"visible": False},
                    "yaxis": {"visible": False}, "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)"}}


def request() -> None:
    """Every run keeps an empty slot first on the page, so that the page's elements keep their places from run to
    run (Streamlit updates elements by place: a slot in the first run only would have every later run replace
    every element). In the session's first run the slot shows the empty chart until `clear`."""
    slot = st.empty()
    if st.session_state.get(_DONE):
        return
    st.session_state[_DONE] = True
    slot.plotly_chart(empty_figure(), config={"staticPlot": True, "displayModeBar": False}, key=KEY)
    st.session_state[_SLOT] = slot


def empty_figure() -> go.Figure:
    """The empty chart, safe to build while another thread imports pandas. Plotly's checks look at pandas if it is
    in sys.modules: while the server's warm start imports it in its thread it is there half made ("partially
    initialized module 'pandas' has no attribute 'Series'"); an import statement waits for that import to finish.
    (app.py's own figures come after its imports, which include pandas.)"""
    importlib.import_module("pandas")
    return go.Figure(EMPTY)


def clear() -> None:
    """At the end of the run: remove the empty chart, if this run drew one (its slot stays, empty)."""
    slot = st.session_state.pop(_SLOT, None)
    if slot is not None:
        slot.empty()
