"""The app as a server: `streamlit run replica.py` serves app.py exactly as `streamlit run app.py` does, plus
- a warm start: as the server starts, before any visitor, it loads the default model in the background
  (components/warm_start.py), so the first visitor does not wait for it;
- GET /replica/status, this server's status as JSON (cluster/status.py).
scripts/run.sh starts one; scripts/serve.sh starts several of these behind HAProxy."""

from contextlib import asynccontextmanager

import streamlit as st
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cluster.status import replica_status
from components import warm_start


async def status(request: Request) -> JSONResponse:
    return JSONResponse(replica_status(), headers={"Cache-Control": "no-cache"})


@asynccontextmanager
async def lifespan(app: st.App):
    warm_start.start()  # returns at once: the model loads in its own thread while the server answers
    yield


app = st.App("app.py", lifespan=lifespan, routes=[Route("/replica/status", status, methods=["GET"])])
