"""What glibc's allocator keeps after runs, and what malloc_trim and fewer arenas change (peak, memory after, time).

    .venv/bin/python bench/bench_allocator.py                # every variant, each in a fresh process
    .venv/bin/python bench/bench_allocator.py --one trim     # one variant (what the driver runs)

A server's runs each compute in a thread of their own (engine/serving/cache.py). Here: SmolLM2, 12 distinct
1,000-token texts through a RunCache of 1,500 MB, three requests at a time, as three visitors would; the
process's RSS sampled every 5 ms. Variants: glibc as it comes; MALLOC_ARENA_MAX=2 (mallopt, as the app sets);
malloc_trim(0) after each run and eviction (the run cache's `trim`, as the app sets); both.
Prints a Markdown table: RSS at rest (model loaded), peak, RSS after the last run, wall time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's engine, wherever run from

VARIANTS = {"glibc": (False, False), "arenas": (True, False), "trim": (False, True), "both": (True, True)}
TEXTS, AT_ONCE, BUDGET_MB = 12, 3, 1500


def one(variant: str) -> str:
    import psutil

    import engine
    from engine.serving import memory
    from engine.serving.cache import RunCache
    from engine.serving.runs import get_trace

    arenas, trim = VARIANTS[variant]
    if arenas:
        memory.limit_arenas(2)
    model = engine.load("smollm2-135m")
    model.run("warm up")
    process = psutil.Process()
    rest, peak, done = process.memory_info().rss, [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.005)

    cache = RunCache(BUDGET_MB << 20, trim=memory.trim if trim else None)
    texts = [f"Text {i}: the mole dug a tunnel under garden number {i}, and the gardener was furious. " * 50
             for i in range(TEXTS)]
    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    with ThreadPoolExecutor(AT_ONCE) as pool:
        list(pool.map(lambda text: get_trace(cache, model, text, max_tokens=1000).n_tokens, texts))
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    after = process.memory_info().rss
    mb = 1 << 20
    return f"| {variant} | {rest / mb:,.0f} | {peak[0] / mb:,.0f} | {after / mb:,.0f} | {elapsed:.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--one", choices=list(VARIANTS))
    args = parser.parse_args()
    if args.one:
        print(one(args.one))
        return
    print(f"{TEXTS} distinct 1,000-token SmolLM2 runs, {AT_ONCE} at a time, RunCache budget {BUDGET_MB} MB\n")
    print("| allocator | RSS at rest MB | peak MB | after MB | time s |\n|---|---:|---:|---:|---:|")
    for variant in VARIANTS:
        out = subprocess.run([sys.executable, __file__, "--one", variant], capture_output=True, text=True, check=True)
        print(out.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
