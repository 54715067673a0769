"""Fair use per client through the real balancer (`bash scripts/serve.sh`, HAProxy, one replica): clients are
played from distinct loopback source addresses (127.0.0.2, 127.0.0.3, …) by a small websocket client that speaks
Streamlit's protocol (tests/streamlit_client.py), one websocket session per tab.

- One client opens twenty tabs: the balancer keeps CLIENT_CONNS of them open and answers the rest with its 429
  page, while another client is served.
- The client's open tabs each ask for a new text at once, each claiming another address in its own
  X-Forwarded-For: the app's cap on new runs per minute counts them as one client (the address the balancer
  appended), so only CAP of them run; the other client's new text still runs.
- A client opening new sessions too fast gets the balancer's other 429 page.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cluster.haproxy import CLIENT_CONNS, CLIENT_RATE
from tests.streamlit_client import Refused, Tab, http_get
from tests.test_cluster import serve

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(600)]
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
CAP = 3  # new runs per client and minute, for this test
GREEDY, OTHER, HASTY = "127.0.0.2", "127.0.0.3", "127.0.0.4"
TABS = 20


def slowed_down(page) -> bool:
    return any(alert.startswith("Slow down: you started") for alert in page.alerts)


def test_one_client_with_twenty_tabs_is_limited_while_another_is_served(tmp_path):
    if not Path(HAPROXY).exists():
        pytest.skip(f"{HAPROXY} is missing: `bash scripts/setup.sh --dev` installs Debian's haproxy")
    env = {"ATTN_EXPLORER_MAX_TOKENS": "16", "ATTN_EXPLORER_ALLOW_CUSTOM_MODELS": "0",
           "ATTN_EXPLORER_RUNS_PER_MINUTE": str(CAP)}
    with serve(tmp_path, 1, env) as (url, _):
        other = Tab(url, OTHER)
        first = other.run({"text": "The other client opens the page."})  # loads the model
        assert first.charts and not first.exceptions and not slowed_down(first), first

        # twenty tabs from one address, each claiming another address in its own X-Forwarded-For: CLIENT_CONNS
        # open, the rest refused with the balancer's page
        tabs, refused = [], []
        for i in range(TABS):
            try:
                tabs.append(Tab(url, GREEDY, headers={"X-Forwarded-For": f"10.0.0.{i}"}))
            except Refused as err:
                refused.append(err)
        assert len(tabs) == CLIENT_CONNS and len(refused) == TABS - CLIENT_CONNS
        assert all(r.status == 429 and "Too many open pages from your address" in r.body for r in refused)
        assert http_get(url, GREEDY, "/")[0] == 429  # a page load from that address too
        status, page = http_get(url, OTHER, "/")  # while the other client is served
        assert status == 200 and "<html" in page.lower()

        # every open tab asks for a new text at once
        with ThreadPoolExecutor(max_workers=len(tabs) + 1) as pool:
            storm = pool.map(lambda i: tabs[i].run({"text": f"Greedy tab {i} asks for the mole's tunnel."}),
                             range(len(tabs)))
            served_other = pool.submit(other.run, {"text": "Meanwhile the other client asks for the river bank."})
            pages, page_other = list(storm), served_other.result()
        assert not any(p.exceptions for p in pages), [p.exceptions for p in pages]
        ran = [p for p in pages if p.charts and not slowed_down(p)]
        slowed = [p for p in pages if slowed_down(p) and not p.charts]
        assert len(ran) == CAP and len(slowed) == len(pages) - CAP  # one client's cap, not one per tab
        assert page_other.charts and not slowed_down(page_other) and not page_other.exceptions
        for tab in tabs:
            tab.close()

        # new sessions too fast from one address (each opened and closed at once): served up to the limit, then
        # the balancer's other page, for a session and for a page load; the page's files are never counted
        served, refusal = 0, None
        for _ in range(CLIENT_RATE + 5):
            try:
                Tab(url, HASTY).close()
                served += 1
            except Refused as err:
                refusal = err
        assert served == CLIENT_RATE and refusal is not None and refusal.status == 429
        assert "Too many new pages from your address" in refusal.body
        assert http_get(url, HASTY, "/")[0] == 429
        assert all(http_get(url, HASTY, "/_stcore/health") == (200, "ok") for _ in range(3))
        assert http_get(url, OTHER, "/")[0] == 200
        other.close()
    logs = "".join(p.read_text() for p in tmp_path.glob("replica-*.log"))
    assert "Traceback" not in logs, logs[-3000:]
