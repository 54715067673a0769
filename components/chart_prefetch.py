"""The first chart sooner: a session's first run starts with an empty, invisible Plotly chart, so that the browser
loads Plotly's script (the page's largest, 4.7 MB, which took a 2-core machine's Chromium ~2 s to load and start)
while the server imports the engine, loads the model and runs the text, not after them. app.py calls `request`
before its own imports and `clear` at the end of the run. Figures: README, "The first visitor does not wait"."""

from __future__ import annotations

import streamlit as st

_SLOT = "_chart_prefetch_slot"  # this run's placeholder, until `clear`
_DONE = "_chart_prefetch_done"
KEY = "chart_prefetch"  # the empty chart's element key (tests that count charts leave it out)
EMPTY = {"data": [{"type": "scatter", "x": [], "y": [], "hoverinfo": "skip"}],
         "layout": {"height": 10, "margin": {"l": 0, "r": 0, "t": 0, "b": 0}, "xaxis": {"visible": False},
                    "yaxis": {"visible": False}, "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)"}}


def request() -> None:
    """On the session's first run: draw the empty chart (the browser then fetches Plotly). Later runs: nothing,
    the page has it."""
    if st.session_state.get(_DONE):
        return
    st.session_state[_DONE] = True
    slot = st.empty()
    slot.plotly_chart(EMPTY, config={"staticPlot": True, "displayModeBar": False}, key=KEY)
    st.session_state[_SLOT] = slot


def clear() -> None:
    """At the end of the run: remove the empty chart, if this run drew one."""
    slot = st.session_state.pop(_SLOT, None)
    if slot is not None:
        slot.empty()
