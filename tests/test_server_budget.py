"""The memory budget through the real server: eight visitors open distinct ~1,000-token texts at once in
headless Chromium; the server's memory stays within ATTN_EXPLORER_MEMORY_MB + the loaded model + 1 GB, and
every visitor ends with a chart (after a queue notice if it had to wait) and no exception."""

from __future__ import annotations

import threading
import time
import urllib.parse

import psutil
import pytest

from tests.browser import CHROMIUM, chromium, streamlit_server

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(900)]
BUDGET_MB = 3000
VISITORS = 8
WORDS = ["mole", "garden", "tunnel", "river", "bank", "tower", "chemist", "lawn", "roses", "spring"]


def long_text(i: int) -> str:
    """A distinct text of about 1,000 SmolLM2 tokens."""
    sentence = f"Visitor {i} says: the {WORDS[i % 10]} near the {WORDS[(i + 3) % 10]} was dug by a mole. "
    return sentence * 55


class PeakRSS:
    """Samples the server's resident memory (with its children) every 50 ms."""

    def __init__(self, pid: int):
        self.process, self.peak, self.stop = psutil.Process(pid), 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        procs = [self.process, *self.process.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs if p.is_running())

    def _run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def chart_shown(page) -> bool:
    return page.evaluate("() => !!document.querySelector('.st-key-pattern_fig .js-plotly-plot')"
                         " && !document.querySelector('[data-testid=\"stStatusWidget\"]')")


def test_eight_visitors_with_long_texts_stay_within_the_memory_budget(tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: `bash scripts/setup.sh --dev` installs Debian's chromium")
    env = {"ATTN_EXPLORER_MEMORY_MB": str(BUDGET_MB)}
    with streamlit_server(tmp_path / "server.log", env=env) as url, chromium(tmp_path / "profile") as first:
        server = next(p for p in psutil.process_iter(["cmdline"])
                      if p.info["cmdline"] and "streamlit" in " ".join(p.info["cmdline"]) and url.rsplit(":", 1)[1]
                      in " ".join(p.info["cmdline"]))
        pid = server.pid
        first.goto(url + "/?text=" + urllib.parse.quote("The mole dug a tunnel."))
        first.wait_for_function("() => !!document.querySelector('.st-key-pattern_fig .js-plotly-plot')",
                                timeout=300_000)
        with PeakRSS(pid) as idle:
            time.sleep(1)
        loaded = idle.peak  # the model loaded and one short run done: the server at rest
        context = first.context
        pages = [context.new_page() for _ in range(VISITORS)]
        queued_seen = []
        started = time.monotonic()
        with PeakRSS(pid) as memory:
            for i, page in enumerate(pages):
                page.goto(url + "/?text=" + urllib.parse.quote(long_text(i)), wait_until="commit")
            deadline = time.monotonic() + 600
            done = set()
            while len(done) < VISITORS and time.monotonic() < deadline:
                for i, page in enumerate(pages):
                    if i in done:
                        continue
                    if page.get_by_text("Queued:").count():
                        queued_seen.append(i)
                    if chart_shown(page):
                        done.add(i)
                time.sleep(0.5)
        elapsed = time.monotonic() - started
        assert len(done) == VISITORS, f"only {sorted(done)} of {VISITORS} visitors got a chart"
        for page in pages:
            assert page.locator('[data-testid="stException"]').count() == 0
        limit = (BUDGET_MB << 20) + loaded + (1 << 30)
        print(f"server at rest {loaded / 2**20:,.0f} MB; peak with {VISITORS} visitors {memory.peak / 2**20:,.0f} MB; "
              f"limit {limit / 2**20:,.0f} MB (margin {(limit - memory.peak) / 2**20:,.0f} MB); every chart after "
              f"{elapsed:.0f} s; visitors who saw the queue notice: {sorted(set(queued_seen))}")
        assert memory.peak <= limit
        assert "Traceback" not in (tmp_path / "server.log").read_text()
