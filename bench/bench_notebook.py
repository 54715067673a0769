"""Time what a researcher does in a notebook: run a text, then read every layer's pattern and the logits.

For SmolLM2-135M, on the same token ids, in one process, interleaved (every case once per round, the order
rotated each round), medians with the spread (min–max) and each case's peak memory rise:

- `engine run`: `model.run_ids(ids)` alone;
- `engine loop`: the run, then `[trace["pattern", L] for L in range(n_layers)]`, then `trace.logits`;
- `engine bulk`: the run, then `trace.patterns()`, then `trace.logits`;
- `engine lean loop`, `engine lean bulk`: the same with `run_ids(ids, lean=True)`, whose trace holds the residual
  stream only (as Hugging Face's hidden states) and computes the rest on access;
- `engine keep loop`, `engine keep bulk`: the same with `run_ids(ids, keep=("pattern",))`, a lean run that
  computes attention explicitly and hands each pattern of the pass to its first reader;
- `HF eager`: the Hugging Face model (eager attention, float32) with `output_attentions=True,
  output_hidden_states=True` (its logits come with the forward pass);
- `TransformerLens`: `run_with_cache` through `TransformerBridge` (where `transformer_lens` is installed);
- `nnsight`: one trace that saves every layer's attention weights and the logits (where `nnsight` is installed).

TransformerLens and nnsight are not project dependencies; the cases run where they import and are skipped,
saying why, otherwise. Install them into a separate environment to compare (their pins may move torch):

    python -m venv /tmp/tools && /tmp/tools/bin/pip install -e . transformer-lens nnsight
    /tmp/tools/bin/python bench/bench_notebook.py

Usage (measure alone: other processes inflate CPU timings):

    .venv/bin/python bench/bench_notebook.py                   # 128, 512, 2,048 tokens, CPU
    .venv/bin/python bench/bench_notebook.py --quick           # 128 tokens, 3 rounds
    .venv/bin/python bench/bench_notebook.py --threads 2 --lengths 512 --repeats 7
    .venv/bin/python bench/bench_notebook.py --device cuda

Peak memory: the largest rise over the level just before the case (RSS sampled every ~5 ms by a thread, after
freeing heap with malloc_trim; allocated memory on CUDA), with everything the case returns still held, as a
notebook holds it.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from bench_engine import MB, PeakMemory, hf_model, sync, token_ids  # noqa: E402

import engine  # noqa: E402
from engine import loading  # noqa: E402

MODEL = "smollm2-135m"
LENGTHS = [128, 512, 2048]
Case = Callable[[list[int]], object]
CLOCK = time.perf_counter  # --clock cpu: time.process_time, the CPU time of this process (see main)


def engine_cases(model: engine.Model) -> dict[str, Case]:
    n_layers = model.config.n_layers

    def run(ids):
        return model.run_ids(ids)

    def loop(ids):
        trace = model.run_ids(ids)
        patterns = [trace["pattern", layer] for layer in range(n_layers)]
        return trace, patterns, trace.logits

    def bulk(ids):
        trace = model.run_ids(ids)
        return trace, trace.patterns(), trace.logits

    def lean_loop(ids):
        trace = model.run_ids(ids, lean=True)
        patterns = [trace["pattern", layer] for layer in range(n_layers)]
        return trace, patterns, trace.logits

    def lean_bulk(ids):
        trace = model.run_ids(ids, lean=True)
        return trace, trace.patterns(), trace.logits

    def keep_loop(ids):
        trace = model.run_ids(ids, keep=("pattern",))
        patterns = [trace["pattern", layer] for layer in range(n_layers)]
        return trace, patterns, trace.logits

    def keep_bulk(ids):
        trace = model.run_ids(ids, keep=("pattern",))
        return trace, trace.patterns(), trace.logits

    return {"engine run": run, "engine loop": loop, "engine bulk": bulk, "engine lean loop": lean_loop,
            "engine lean bulk": lean_bulk, "engine keep loop": keep_loop, "engine keep bulk": keep_bulk}


def hf_case(device: torch.device) -> Case:
    hf = hf_model(MODEL, device)

    def forward(ids):
        with torch.inference_mode():
            return hf(torch.tensor([ids], device=device), output_attentions=True, output_hidden_states=True)

    return forward


def transformer_lens_case(device: torch.device) -> Case | str:
    """run_with_cache through TransformerLens's bridge over the same local weights, or why it is skipped."""
    try:
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError as err:
        return f"transformer_lens not importable ({err}); pip install transformer-lens"
    try:
        from transformers import AutoTokenizer

        folder = loading.resolve(MODEL, lambda f, m: None)  # the embedded SmolLM2 (Llama architecture)
        bridge = TransformerBridge.boot_transformers(str(folder), device=device, dtype=torch.float32,
                                                     tokenizer=AutoTokenizer.from_pretrained(folder))
    except Exception as err:  # an optional tool whose API moves: say why, do not stop the benchmark
        return f"TransformerBridge could not load the local SmolLM2 ({type(err).__name__}: {err})"

    def run_with_cache(ids):
        with torch.no_grad():
            return bridge.run_with_cache(torch.tensor([ids], device=device))

    return run_with_cache


def nnsight_case(device: torch.device) -> Case | str:
    """One nnsight trace saving every layer's attention weights and the logits, or why it is skipped."""
    try:
        from nnsight import LanguageModel
    except ImportError as err:
        return f"nnsight not importable ({err}); pip install nnsight"
    try:
        from transformers import AutoTokenizer

        folder = loading.resolve(MODEL, lambda f, m: None)
        lm = LanguageModel(hf_model(MODEL, device), tokenizer=AutoTokenizer.from_pretrained(folder))
    except Exception as err:
        return f"nnsight could not wrap the local SmolLM2 ({type(err).__name__}: {err})"

    def save_all(ids):
        with torch.no_grad(), lm.trace(torch.tensor([ids], device=device), output_attentions=True):
            patterns = [layer.self_attn.output[1].save() for layer in lm.model.layers]
            logits = lm.output.logits.save()
        return patterns, logits

    return save_all


def measure(case: Case, ids: list[int], device: torch.device) -> tuple[float, int]:
    """(ms, peak bytes) of one call, its result held until the end of the measurement."""
    with PeakMemory(device) as mem:
        start = CLOCK()
        out = case(ids)
        sync(device)
        ms = (CLOCK() - start) * 1000
    del out
    return ms, mem.peak_bytes


def bench(cases: dict[str, Case], lengths: list[int], repeats: int, device: torch.device,
          model: engine.Model) -> list[dict]:
    warm = token_ids(model, 16)
    for case in cases.values():  # kernel selection, allocator growth
        measure(case, warm, device)
    rows = []
    for n in lengths:
        ids = token_ids(model, n)
        assert len(ids) == n
        times: dict[str, list[float]] = {name: [] for name in cases}
        peaks: dict[str, list[int]] = {name: [] for name in cases}
        names = list(cases)
        for round_ in range(repeats if n < 2048 else max(2, repeats // 2)):
            order = names[round_ % len(names):] + names[:round_ % len(names)]
            for name in order:
                ms, peak = measure(cases[name], ids, device)
                times[name].append(ms)
                peaks[name].append(peak)
        hf = statistics.median(times["HF eager"])
        for name in names:
            row = {"tokens": n, "case": name, "median": statistics.median(times[name]), "min": min(times[name]),
                   "max": max(times[name]), "hf": hf, "peak": statistics.median(peaks[name]),
                   "peak_max": max(peaks[name]), "hf_peak": statistics.median(peaks["HF eager"]),
                   "repeats": len(times[name])}
            rows.append(row)
            print(f"  {n:>5} tokens {name:>16}: {row['median']:9.1f} ms ({row['median'] / hf:.2f}× HF), "
                  f"peak +{row['peak'] / MB:,.0f} MB", file=sys.stderr, flush=True)
        gc.collect()
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| tokens | case | median ms | min–max ms | × HF eager | peak rise MB (median, max) | × HF peak "
             "| rounds |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['tokens']:,} | {r['case']} | {r['median']:,.0f} | {r['min']:,.0f}–{r['max']:,.0f} "
                     f"| {r['median'] / r['hf']:.2f} | {r['peak'] / MB:,.0f} ({r['peak_max'] / MB:,.0f}) "
                     f"| {r['peak'] / max(r['hf_peak'], 1):.2f} | {r['repeats']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--quick", action="store_true", help="128 tokens, 3 rounds")
    parser.add_argument("--lengths", type=int, nargs="+", default=LENGTHS)
    parser.add_argument("--repeats", type=int, default=5, help="rounds per length (half, at least 2, at 2,048+)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: CPU seconds of this process instead of wall time; with --threads 1 an indication "
                             "that holds on a busy machine (memory-bound work still slows there)")
    parser.add_argument("--skip", nargs="+", default=[], metavar="CASE",
                        help='cases to leave out, e.g. --skip "engine bulk" "engine keep bulk"')
    parser.add_argument("--no-tools", action="store_true", help="skip TransformerLens and nnsight")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == "cpu":
        global CLOCK
        CLOCK = time.process_time
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    device = torch.device(args.device)
    lengths, repeats = ([128], 3) if args.quick else (args.lengths, args.repeats)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    import transformers

    print(f"device: {device} ({name}); torch {torch.__version__}; transformers {transformers.__version__}; "
          f"torch threads {torch.get_num_threads()}; CPU cores {os.cpu_count()}; Python {platform.python_version()}")
    if hasattr(os, "getloadavg"):
        print(f"load average at the start (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    model = engine.load(MODEL, device=device)
    cases = engine_cases(model)
    cases["HF eager"] = hf_case(device)
    if not args.no_tools:
        for tool, make in (("TransformerLens", transformer_lens_case), ("nnsight", nnsight_case)):
            case = make(device)
            if isinstance(case, str):
                print(f"{tool}: skipped: {case}")
            else:
                cases[tool] = case
    cases = {name: case for name, case in cases.items() if name not in args.skip or name == "HF eager"}
    memory = "allocated CUDA memory" if device.type == "cuda" else "RSS sampled every 5 ms"
    clock = "CPU time of the process" if args.clock == "cpu" else "wall time"
    print(f"SmolLM2-135M, float32; interleaved rounds; {clock}; peak rise over the level before each case ({memory}), "
          "with its results held\n")
    print(table(bench(cases, lengths, repeats, device, model)))
    if hasattr(os, "getloadavg"):
        print(f"\nload average at the end (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())} "
              f"on {os.cpu_count()} cores; other processes inflate CPU timings")


if __name__ == "__main__":
    main()
