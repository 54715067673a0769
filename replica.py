"""The app as a server: `streamlit run replica.py` serves app.py exactly as `streamlit run app.py` does, plus
- a warm start: as the server starts, before any visitor, it loads the default model in the background
  (components/warm_start.py), so the first visitor does not wait for it;
- GET /replica/status, this server's status as JSON (cluster/status.py).
scripts/run.sh starts one; scripts/serve.sh starts several of these behind HAProxy."""

import asyncio
import importlib
from contextlib import asynccontextmanager

import streamlit as st
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cluster.status import replica_status


async def status(request: Request) -> JSONResponse:
    return JSONResponse(replica_status(), headers={"Cache-Control": "no-cache"})


# The warm start begins this long after the server's startup, once it answers: begun at once, the load's imports
# (torch) hold the interpreter's lock and delayed the first answer to /_stcore/health from ~0.8 s to ~2.3 s (alone)
# or ~9 s (a busy machine); a visitor who connects meanwhile sees the load's progress. Imported before the server
# answers instead, they delayed it to ~2.5 s and the first chart came no sooner (README, "The first visitor").
WARM_START_DELAY_S = 1.0


def warm_start() -> None:
    """Begin the warm start (components.runs.warm_start); imported here, once the server answers: torch comes
    with it. After the default page's run it imports every view module, as app.py does at its first run."""
    from components import runs

    runs.warm_start(then=lambda: importlib.import_module("components.views.registry"))


@asynccontextmanager
async def lifespan(app: st.App):
    # returns at once: the model loads in its own thread while the server answers
    asyncio.get_running_loop().call_later(WARM_START_DELAY_S, warm_start)
    yield


app = st.App("app.py", lifespan=lifespan, routes=[Route("/replica/status", status, methods=["GET"])])
