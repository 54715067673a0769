"""App benchmarks: rerun server time, figure payloads, and cold/warm start to the first heatmap.

    .venv/bin/python bench/bench_app.py            # everything (several minutes)
    .venv/bin/python bench/bench_app.py --skip-start
    .venv/bin/python bench/bench_app.py --notes-only  # the "Follow the notes" steps alone

Server time is measured inside the script run (app.py records `server_ms` for each rerun), so the
AppTest harness's own polling is not counted. Medians over repeats; one process, one machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PARAGRAPH = ("The mole dug a tunnel under the garden, and the gardener, who had planted roses there in spring, "
             "was furious about it. ")


def text_of(model, n_tokens: int) -> str:
    """A text of exactly n_tokens SmolLM2 tokens (decoded from a cut of a long one)."""
    ids = model.tokenizer(PARAGRAPH * (n_tokens // 20 + 2))["input_ids"][:n_tokens]
    text = model.tokenizer.decode(ids)
    assert len(model.tokenizer(text)["input_ids"]) == n_tokens
    return text


def rerun_times(n_tokens: int, repeats: int) -> dict[str, float]:
    """Median server ms of reruns that change the shown head, and of reruns that switch a head off."""
    from streamlit.testing.v1 import AppTest

    import engine
    from components.views.registry import label

    model = engine.load("smollm2-135m")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=900)
    at.query_params["text"] = text_of(model, n_tokens)
    at.run()
    assert not at.exception, at.exception
    show, switch = [], []
    for i in range(repeats):
        at.slider(key="head").set_value((i % 8) + 1).run()
        show.append(at.session_state.server_ms)
    at.session_state["tab"] = label("interventions")
    at.run()
    for i in range(repeats):  # each switch is a new combination: an engine run that no cache holds
        at.button(key="heads_toggle_this").click().run()
        switch.append(at.session_state.server_ms)
        at.slider(key="layer").set_value((i + 1) % 30).run()  # moves on, so the next toggle is a new head
    assert not at.exception, at.exception
    return {"show head": statistics.median(show), "switch head off": statistics.median(switch)}


def notes_step_times(n_tokens: int, repeats: int) -> list[tuple[str, float]]:
    """(step title, median server ms) of each "Follow the notes" step on a cached run of n_tokens: each step is
    opened by its "next" button, then redrawn (another token chosen and back) `repeats` times."""
    from streamlit.testing.v1 import AppTest

    import engine
    from components.views import notes

    model = engine.load("smollm2-135m")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=900)
    at.query_params.update(text=text_of(model, n_tokens), tab="notes", layer="3", head="1")
    at.run()
    rows = []
    for number, step in enumerate(notes.STEPS, start=1):
        times = []
        for i in range(repeats):
            at.selectbox(key="notes_token").set_value(n_tokens - 1 - (i % 2)).run()
            times.append(at.session_state.server_ms)
        assert not at.exception, at.exception
        rows.append((f"{number}. {step.title}", statistics.median(times)))
        if number < len(notes.STEPS):
            at.button(key="notes_next").click().run()
    return rows


def payloads(lengths: list[int]) -> list[tuple[int, int, int]]:
    """(tokens, pattern figure bytes, head grid bytes) for real SmolLM2 traces, built as the views build them:
    above 128 tokens from patterns pooled block by block by the engine."""
    import engine
    from components.figures import heads as head_grid
    from components.figures.matrix import HOVER_BLOCKS, MAX_IMAGE_PX, Pooled
    from components.figures.pattern import pattern_figure
    from engine.analysis import head_stats, pooling

    model = engine.load("smollm2-135m")
    rows = []
    for n in lengths:
        trace = model.run(text_of(model, n), max_tokens=n)
        if n > 128:
            p = pooling.max_pooled(trace, "pattern", 3, 0, (MAX_IMAGE_PX, HOVER_BLOCKS))
            fig = pattern_figure(Pooled(p.n, *p.maps, p.low, p.high), trace.tokens)
        else:
            fig = pattern_figure(trace["pattern", 3, 0].numpy(), trace.tokens, scores=trace["scores", 3, 0].numpy())
        grid = head_grid.head_grid_figure(head_stats.head_overview(trace).thumbnails, selected=(3, 0))
        rows.append((n, len(fig.to_json()), len(grid.to_json())))
        del trace
    return rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_to_heatmap(cache_dir: str, script: Path = ROOT / "app.py") -> float:
    """Seconds from `streamlit run` to the first pattern heatmap drawn in an already open headless Chromium."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    env = {**os.environ, "ATTN_EXPLORER_CACHE": cache_dir, "HF_HUB_OFFLINE": "1"}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page()
        started = time.perf_counter()
        server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(script), "--server.headless",
                                   "true", "--server.port", str(port), "--browser.gatherUsageStats", "false"],
                                  env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:  # not listening yet
                    time.sleep(0.05)
            page.goto(f"http://127.0.0.1:{port}/", timeout=60_000)
            page.wait_for_selector(".js-plotly-plot .heatmaplayer, .js-plotly-plot .imagelayer image",
                                   timeout=600_000)
            return time.perf_counter() - started
        finally:
            browser.close()
            server.terminate()
            server.wait(timeout=30)


def baseline_page(tmp: str) -> float:
    """The same measurement for a one-heatmap Streamlit page: the floor set by Streamlit, Plotly and the browser."""
    script = Path(tmp) / "baseline.py"
    script.write_text("import plotly.graph_objects as go\nimport streamlit as st\n"
                      "st.plotly_chart(go.Figure(go.Heatmap(z=[[0, 1], [1, 0]])))\n")
    return start_to_heatmap(tmp, script)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--skip-start", action="store_true", help="skip the cold/warm start measurement")
    parser.add_argument("--notes-only", action="store_true", help="only the Follow the notes steps")
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs\n")
    print("| Follow the notes step (SmolLM2, CPU, 16 tokens, cached run) | server time, median |")
    print("|---|---|")
    for title, ms in notes_step_times(16, args.repeats):
        print(f"| {title} | {ms:.0f} ms |")
    if args.notes_only:
        return
    print()
    print("| rerun (SmolLM2, CPU) | tokens | server time, median |")
    print("|---|---|---|")
    for n in (64, 1024):
        times = rerun_times(n, args.repeats if n <= 64 else max(3, args.repeats // 2))
        print(f"| change the displayed head | {n:,} | {times['show head']:.0f} ms |")
        print(f"| switch a head off (engine run + draw) | {n:,} | {times['switch head off']:.0f} ms |")
    print("\n| figure payload | tokens | pattern figure | head grid (30 × 9) |")
    print("|---|---|---|---|")
    for n, pattern_bytes, grid_bytes in payloads([64, 512, 2048, 8192]):
        print(f"| JSON sent to the browser | {n:,} | {pattern_bytes / 1e6:.2f} MB | {grid_bytes / 1e6:.2f} MB |")
    if not args.skip_start:
        cold_dir = tempfile.mkdtemp(prefix="ae-cold-")
        try:
            cold = start_to_heatmap(cold_dir)
            warm = statistics.median(start_to_heatmap(cold_dir) for _ in range(3))
        finally:
            shutil.rmtree(cold_dir, ignore_errors=True)
        floor = statistics.median(baseline_page(tempfile.mkdtemp(prefix="ae-base-")) for _ in range(3))
        print("\n| `streamlit run` to the first heatmap in an open browser | seconds |")
        print("|---|---|")
        print(f"| cold (empty weight cache: dequantise the GGUF) | {cold:.1f} |")
        print(f"| warm (median of 3) | {warm:.1f} |")
        print(f"| a one-heatmap Streamlit page, for comparison (median of 3) | {floor:.1f} |")


if __name__ == "__main__":
    main()
