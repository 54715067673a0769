"""The app as a server: `streamlit run replica.py` serves app.py exactly as `streamlit run app.py` does, plus
- a warm start: as the server starts, before any visitor, it loads the default model in the background
  (components/warm_start.py), so the first visitor does not wait for it;
- GET /replica/status, this server's status as JSON (cluster/status.py).
scripts/run.sh starts one; scripts/serve.sh starts several of these behind HAProxy."""

import asyncio
import importlib
import threading
from contextlib import asynccontextmanager

import streamlit as st
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cluster.status import replica_status


async def status(request: Request) -> JSONResponse:
    return JSONResponse(replica_status(), headers={"Cache-Control": "no-cache"})


# The warm start begins this long after the server's startup, once it answers (~0.8 s alone). Its imports run in a
# thread of their own, never on the server's event loop; still, torch's import holds the interpreter's lock for long
# stretches, and begun before the first answer it delayed /_stcore/health from ~0.8 s to ~2.3 s (alone) or ~9 s (a
# busy machine). Alone, in four runs each, 0.3 s gave the first chart soonest (5.2-6.0 s; 1.0 s: 6.2-13.2 s, as the
# load's imports met the visitor's page; README, "The first visitor").
WARM_START_DELAY_S = 0.3


def warm_start() -> None:
    """Begin the warm start (components.runs.warm_start) in a thread of its own. Its imports (torch comes with
    components.runs) take seconds: made on the server's event loop, as they once were, they held every answer and
    every message to a visitor back until they were done. pandas and Plotly come first, so the empty chart a
    visitor's first run sends (components/chart_prefetch.py) is ready as soon as they arrive. After the default
    page's run it imports every view module, as app.py does at its first run."""
    def begin() -> None:
        from components import chart_prefetch

        chart_prefetch.empty_figure().to_json()  # Plotly's modules load lazily: this loads what that chart needs
        from components import runs

        runs.warm_start(then=lambda: importlib.import_module("components.views.registry"))

    threading.Thread(target=begin, name="warm-start-imports", daemon=True).start()


@asynccontextmanager
async def lifespan(app: st.App):
    # returns at once: the model loads in its own thread while the server answers
    asyncio.get_running_loop().call_later(WARM_START_DELAY_S, warm_start)
    yield


app = st.App("app.py", lifespan=lifespan, routes=[Route("/replica/status", status, methods=["GET"])])
