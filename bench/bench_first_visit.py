"""The first visitor after a server start: seconds from starting `streamlit run` to the first chart, for a visitor
who opens the page as soon as /_stcore/health answers, with the weight cache warm (a first start, not counted,
warms it).

    .venv/bin/python bench/bench_first_visit.py --runs 5                 # streamlit run replica.py (warm start)
    .venv/bin/python bench/bench_first_visit.py --runs 5 --entry app.py  # streamlit run app.py (no warm start)
    .venv/bin/python bench/bench_first_visit.py --runs 5 --entry app.py --entry replica.py   # both, alternating

Headless Chromium (Debian's, through Playwright) is started once before the runs, so its own start is not
counted. Each run prints when the server answered, when the page's first chart (the attention pattern) was
drawn, and the median over the runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser import CHROMIUM, CHROMIUM_ARGS, free_port, healthy  # noqa: E402

CHART = ".st-key-pattern_fig .js-plotly-plot"


def first_visit(browser, entry: str, log: Path) -> tuple[float, float]:
    """(server answers, first chart drawn), in seconds after the server process was started."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "streamlit", "run", str(ROOT / entry), "--server.headless", "true",
               "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none"]
    page = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
    with log.open("w") as out:
        started = time.perf_counter()
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            while not healthy(url, timeout=1):
                if server.poll() is not None:
                    raise RuntimeError(f"the server exited: {log.read_text()[-2000:]}")
                time.sleep(0.02)
            answered = time.perf_counter() - started
            page.goto(url)
            page.wait_for_selector(CHART, timeout=300_000)
            charted = time.perf_counter() - started
        finally:
            page.context.close()
            server.terminate()
            server.wait(timeout=30)
    return answered, charted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--entry", action="append", help="the script `streamlit run` starts (default replica.py; "
                        "given more than once, the entries alternate run by run)")
    parser.add_argument("--log", default="/tmp/bench_first_visit.log")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    entries = args.entry or ["replica.py"]
    load = os.getloadavg()[0]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        first_visit(browser, entries[0], Path(args.log))  # warms the weight cache (and the OS's file cache)
        charts: dict[str, list[float]] = {entry: [] for entry in entries}
        for run in range(args.runs):
            for entry in entries:
                answered, charted = first_visit(browser, entry, Path(args.log))
                charts[entry].append(charted)
                print(f"run {run + 1}, {entry}: server answered after {answered:.1f} s, first chart after "
                      f"{charted:.1f} s", flush=True)
        browser.close()
    for entry, seconds in charts.items():
        print(f"{entry}: first chart {statistics.median(seconds):.1f} s after the server's start (median of "
              f"{args.runs}; load average {load:.1f} before, {os.getloadavg()[0]:.1f} after)")


if __name__ == "__main__":
    main()
