"""The warm start through a real server (`streamlit run replica.py`): the default model starts loading as the
server starts, before any session; a visitor who arrives during the load follows its progress, then sees the
first chart; the warm start has also run the default page's sentence, so the next visitor's default page
computes nothing.

The weight cache is empty here (a fresh ATTN_EXPLORER_CACHE), so the load dequantises SmolLM2 (15-30 s on two
cores, longer on a busy machine) and is certainly still going when the visitor, who opens a page as soon as the
load is under way, arrives. bench/bench_first_visit.py measures the first chart's time with a warm cache.
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from components import chart_prefetch
from tests.browser import streamlit_server
from tests.streamlit_client import Tab

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def replica_status(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/replica/status", timeout=30) as response:
        return json.loads(response.read())


def test_the_default_model_loads_before_any_visitor_and_a_visitor_follows_the_load(tmp_path):
    env = {"ATTN_EXPLORER_CACHE": str(tmp_path / "cache"), "ATTN_EXPLORER_ALLOW_CUSTOM_MODELS": "0",
           "ATTN_EXPLORER_MAX_TOKENS": "64"}
    with streamlit_server(tmp_path / "server.log", env=env, script="replica.py") as url:
        # as soon as the server answers, nobody has opened the page; the load begins (replica.WARM_START_DELAY_S
        # after the server's startup) and gets under way
        deadline = time.monotonic() + 60
        while (status := replica_status(url))["warm_start"] is None or status["warm_start"]["message"] == "starting":
            assert status["sessions"] == 0
            assert time.monotonic() < deadline, status
            time.sleep(0.1)
        assert status["sessions"] == 0 and status["warm_start"]["model"] == "smollm2-135m"
        assert status["warm_start"]["state"] == "loading"  # under way, and no session yet

        tab = Tab(url, "127.0.0.1", timeout=500)
        page = tab.run({"text": "The first visitor's own sentence."})  # while the server's load is still going
        tab.close()
        assert not page.exceptions and page.charts, page
        percents = [percent for percent, _ in page.progress]
        assert len(set(percents)) >= 2 and percents == sorted(percents), page.progress  # the load's progress
        assert any("dequantising" in text for _, text in page.progress), page.progress
        # the page's first chart is the empty one that has the browser fetch Plotly while the model loads
        elements = page.elements
        assert elements.index(chart_prefetch.KEY) < min(elements.index("progress"), elements.index("heading"))

        assert replica_status(url)["warm_start"]["state"] == "ready"
        # the warm start also ran the default page's sentence: two runs kept, that one and the visitor's
        while (status := replica_status(url))["cached_runs"] < 2:
            assert time.monotonic() < deadline + 300, status
            time.sleep(0.2)
        again = Tab(url, "127.0.0.1")
        second = again.run({})  # the default page: no load, and its run is the warm start's (no new run)
        rerun = again.run({})  # the same session again: its browser has Plotly, no empty chart is sent
        again.close()
        assert second.charts and not second.progress and not second.exceptions
        assert second.elements.count(chart_prefetch.KEY) == 1 and chart_prefetch.KEY not in rerun.elements
        assert rerun.charts == second.charts
        assert rerun.places == second.places  # the slot stays, emptied: every element keeps its place
        assert replica_status(url)["cached_runs"] == 2
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log, log[-3000:]
