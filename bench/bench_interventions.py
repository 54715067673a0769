"""Interventions without repeated work: a head switched off reuses the unchanged layers of the cached run, and
concurrent requests for one new text share a single engine run.

    .venv/bin/python bench/bench_interventions.py            # SmolLM2, 1,024 tokens, head 25.4 off

Prints a Markdown table of medians (full run vs the same run resuming from the cached unmodified run), then
how many engine runs 8 concurrent requests for one new text cause through the server's RunCache.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import engine  # noqa: E402
from engine.serving.cache import RunCache  # noqa: E402
from engine.serving.runs import get_trace  # noqa: E402

PARAGRAPH = ("The mole dug a tunnel under the garden, and the gardener, who had planted roses there in spring, "
             "was furious about it. ")


def text_of(model: engine.Model, n_tokens: int) -> str:
    """A text of exactly n_tokens tokens (decoded from the ids of a repeated paragraph)."""
    ids = model.tokenizer(PARAGRAPH * (n_tokens // 10 + 10))["input_ids"][:n_tokens]
    text = model.tokenizer.decode(ids)
    assert len(model.tokenize(text)[0]) == n_tokens
    return text


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--layer", type=int, default=25)
    parser.add_argument("--head", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    model = engine.load("smollm2-135m", device="cpu")
    text = text_of(model, args.tokens)
    base = model.run(text)
    mask = model.head_mask_without([(args.layer, args.head)])
    full, reused = [], []
    for _ in range(args.repeats):
        full.append(timed(lambda: model.run(text, head_mask=mask)))
        reused.append(timed(lambda: model.run(text, head_mask=mask, reuse=base)))
    f, r = statistics.median(full), statistics.median(reused)
    print(f"torch threads {torch.get_num_threads()}; load average {os.getloadavg()[0]:.2f}\n")
    print("| what | tokens | median ms | share of a full run |\n|---|---:|---:|---:|")
    print(f"| head {args.layer}.{args.head} off, full run | {args.tokens:,} | {f:,.0f} | 1.00 |")
    print(f"| head {args.layer}.{args.head} off, resuming from the cached run | {args.tokens:,} | {r:,.0f} "
          f"| {r / f:.2f} |")

    cache = RunCache(budget_bytes=8 << 30)
    fresh = text_of(model, 512) + " A new ending."
    barrier = threading.Barrier(8)

    def visitor(_):
        barrier.wait()
        return get_trace(cache, model, fresh)

    start = time.perf_counter()
    threads = [threading.Thread(target=visitor, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"\n8 concurrent requests for one new {len(model.tokenize(fresh)[0])}-token text: "
          f"{cache.runs_started} engine run(s), {time.perf_counter() - start:.1f} s in all")


if __name__ == "__main__":
    main()
