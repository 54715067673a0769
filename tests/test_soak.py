"""No creep: many visitors one after another against a server with a small memory budget, each a fresh page in
headless Chromium with a distinct ~60-token text on one of four tabs, closed once its chart is drawn. The server's
memory after the last visitor stays within 300 MB of what it held once the run cache was full, and closed
sessions leave nothing behind: no download callables or media files of sessions Streamlit no longer keeps, no
per-visitor cap records beyond the last minute's visitors (the replica's /replica/status counts them)."""

from __future__ import annotations

import json
import os
import time
import urllib.parse
import urllib.request

import psutil
import pytest

from tests.browser import CHROMIUM, chromium, streamlit_server

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(1800)]
BUDGET_MB = 300
VISITORS = int(os.environ.get("ATTN_EXPLORER_SOAK_VISITORS", "100"))
FULL_AT = min(20, VISITORS // 2)  # the cache is full by then (about 12 runs of 60 tokens and 3 probes: 300 MB)
CREEP_MB = 300
TABS = {"pattern": "pattern_fig", "heads": "head_grid_fig", "roles": "roles_maps", "deltas": "deltas_norms"}
WORDS = ["mole", "garden", "tunnel", "river", "bank", "tower", "chemist", "lawn", "roses", "spring", "meadow",
         "cellar", "orchard", "harbour", "bridge", "forest", "valley", "castle", "market", "lantern"]


def visitor_text(i: int) -> str:
    """A distinct text of about 60 SmolLM2 tokens."""
    a, b, c = WORDS[i % 20], WORDS[(i // 20 + 7) % 20], WORDS[(i * 7 + 3) % 20]
    return (f"Visitor number {i} writes: the {a} near the old {b} was dug up by a small mole at night, and "
            f"the gardener who loves the {c} was furious about it when she found the mess in the morning light.")


def status(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/replica/status", timeout=30) as response:
        return json.loads(response.read())


def unaccounted(now: dict) -> int:
    """MB the server holds beyond its rest, the loaded models and the cached results: what no estimate counts."""
    return now["resident_mb"] - now["rest_mb"] - now["models_mb"] - now["cached_mb"]


def drawn(page, key: str) -> bool:
    return page.evaluate(f"() => !!document.querySelector('.st-key-{key} .js-plotly-plot')"
                         " && !document.querySelector('[data-testid=\"stStatusWidget\"]')")


def test_a_hundred_visitors_one_after_another_leave_no_creep(tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: `bash scripts/setup.sh --dev` installs Debian's chromium")
    env = {"ATTN_EXPLORER_MEMORY_MB": str(BUDGET_MB), "ATTN_EXPLORER_RUNS_PER_MINUTE": "1000"}
    log = tmp_path / "server.log"
    with streamlit_server(log, env=env, script="replica.py") as url, chromium(tmp_path / "profile") as blank:
        server = psutil.Process(status(url)["pid"])
        context, rss, started = blank.context, [], time.monotonic()
        missed: dict[str, list[int]] = {tab: [] for tab in TABS}
        for i in range(VISITORS):
            tab = list(TABS)[i % len(TABS)]
            page = context.new_page()
            page.goto(f"{url}/?tab={tab}&text=" + urllib.parse.quote(visitor_text(i)), wait_until="commit")
            page.wait_for_function(f"() => !!document.querySelector('.st-key-{TABS[tab]} .js-plotly-plot')",
                                   timeout=300_000)
            deadline = time.monotonic() + 120
            while not drawn(page, TABS[tab]) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert page.locator('[data-testid="stException"]').count() == 0, f"visitor {i} ({tab})"
            missed[tab].append(unaccounted(status(url)))  # the page open
            page.close()
            rss.append(server.memory_info().rss)
        time.sleep(3)  # the last pages' sessions disconnect
        after = status(url)
        elapsed = time.monotonic() - started
    full, last, peak = rss[FULL_AT - 1], rss[-1], max(rss)
    print(f"{VISITORS} visitors in {elapsed:.0f} s; server RSS after visitor {FULL_AT}: {full / 2**20:,.0f} MB, after "
          f"the last: {last / 2**20:,.0f} MB, highest after a visitor: {peak / 2**20:,.0f} MB; status: {after}")
    print("MB beyond rest + models + cached results with the page open, by tab (median, max): "
          + ", ".join(f"{tab} {sorted(v)[len(v) // 2]}, {max(v)}" for tab, v in missed.items() if v))
    assert last - full <= CREEP_MB << 20
    assert after["cached_mb"] <= BUDGET_MB and after["runs_in_flight"] == 0
    # closed sessions leave nothing behind: only the sessions Streamlit still keeps for a reconnect (2 minutes,
    # at most 128) hold files or download callables; the cap remembers only the last minute's visitors
    assert after["runtime_sessions"] == 0
    assert after["runtime_sessions_with_files"] <= after["runtime_sessions_kept"]
    assert after["capped_sessions"] <= after["runtime_sessions_kept"]
    if elapsed > 150:  # the first visitors' sessions expired meanwhile: nothing of theirs is left
        assert after["runtime_sessions_kept"] < VISITORS
    assert "Traceback" not in log.read_text()
