"""The page comes back by itself after its server goes away (a replica behind the balancer dies, or a single
server restarts).

Streamlit's frontend reconnects on its own: it pings /_stcore/health until a server answers (through the
balancer: a live replica) and opens a new websocket there, which starts a new, empty server session. It then
asks that session to run the page, sending the current link's query string and every widget's value, only
when the page was running, had fragments in its last run, or holds a fragment that reruns on a timer (the
`handleConnectionStateChanged` check in Streamlit 1.67's frontend). Otherwise the old elements stay on screen
while nothing runs behind them: the model is not loaded on the new replica, and the first click is taken
as the first run of a new session.

`rerun_on_reconnect()` adds a fragment with a long timer that draws nothing, so every reconnect re-runs the
page on the new server from the link, which holds the whole view (app.py's `init_state`).
"""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

# The timer itself is not what matters, only that one exists; each tick re-runs this empty fragment (~1 ms).
TIMER = timedelta(minutes=30)


@st.fragment(run_every=TIMER)
def _reconnect_timer() -> None:
    """Draws nothing: its timer makes the frontend re-run the page when it reconnects to a server."""


def rerun_on_reconnect() -> None:
    """Call once in every run of the page (app.py's main())."""
    _reconnect_timer()
