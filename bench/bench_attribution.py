"""Attribution timings on SmolLM2, CPU: logit attribution at one position, one query·key attribution, every layer's
flow shares, and the route from the last token (which computes each layer's shares only at the route's positions).

    .venv/bin/python bench/bench_attribution.py                 # 128 and 512 tokens, median of 3
    .venv/bin/python bench/bench_attribution.py --tokens 128 --repeats 5

Prints a Markdown table of medians in ms; the issue's targets: logit attribution ≤ 100 ms at 128 tokens, one
query·key attribution ≤ 300 ms, all layers' flow shares ≤ 5 s at 128 tokens and ≤ 60 s at 512.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import engine  # noqa: E402
from engine.analysis.flow import flow_contributions, flow_route  # noqa: E402

PARAGRAPH = ("The mole dug a tunnel under the garden, and the gardener, who had planted roses there in spring, "
             "was furious about it. ")


def ids_of(model: engine.Model, n_tokens: int) -> list[int]:
    return model.tokenizer(PARAGRAPH * (n_tokens // 10 + 10))["input_ids"][:n_tokens]


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threshold", type=float, default=0.04)
    args = parser.parse_args(argv)
    model = engine.load("smollm2-135m", device="cpu")
    print(f"torch threads {torch.get_num_threads()}; load average {os.getloadavg()[0]:.2f}\n")
    print("| tokens | logit attribution | query·key attribution (18.6) | flow shares, all layers | route "
          f"(threshold {args.threshold}) |")
    print("|---:|---:|---:|---:|---:|")
    for n in args.tokens:
        print(row(model, n, args.repeats, args.threshold), flush=True)


def row(model: engine.Model, n: int, repeats: int, threshold: float) -> str:
    """One table row: the medians at n tokens (the flow and route once past 256 tokens)."""
    trace = model.run_ids(ids_of(model, n))
    last = n - 1
    target, baseline = trace.logits_at(last).topk(2).indices.tolist()
    engine.logit_attribution(model, trace, last, target, baseline)  # warm-up
    logit = median_ms(lambda: engine.logit_attribution(model, trace, last, target, baseline), repeats)
    qk = median_ms(lambda: engine.qk_attribution(model, trace, 18, 6, last, last // 2), repeats)
    slow = 1 if n > 256 else repeats
    flow = median_ms(lambda: [flow_contributions(model, trace, layer) for layer in range(30)], slow)
    route = median_ms(lambda: flow_route(model, trace, last, threshold), slow)
    return f"| {n} | {logit:,.0f} ms | {qk:,.0f} ms | {flow:,.0f} ms | {route:,.0f} ms |"

if __name__ == "__main__":
    main()
