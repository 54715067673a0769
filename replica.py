"""One replica of the app for a load balancer: `streamlit run replica.py` serves app.py exactly as
`streamlit run app.py` does, plus GET /replica/status, this replica's status as JSON (cluster/status.py).
scripts/serve.sh starts several of these behind HAProxy."""

import streamlit as st
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cluster.status import replica_status


async def status(request: Request) -> JSONResponse:
    return JSONResponse(replica_status(), headers={"Cache-Control": "no-cache"})


app = st.App("app.py", routes=[Route("/replica/status", status, methods=["GET"])])
