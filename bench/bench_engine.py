"""Time the engine's traced forward pass against Hugging Face's, and measure what each run costs in memory.

For each embedded model and length, on the same token ids, in one process, interleaved (engine, HF, engine,
HF, ...): `Model.run_ids(ids)` versus the Hugging Face model (eager attention, float32) called with
`output_attentions=True, output_hidden_states=True`. Prints a Markdown table of medians and spreads (min–max).

    .venv/bin/python bench/bench_engine.py                   # both models, all lengths, CPU
    .venv/bin/python bench/bench_engine.py --quick           # 16 and 128 tokens only
    .venv/bin/python bench/bench_engine.py --device cuda --models smollm2-135m

Peak memory is the largest increase over the level just before the call: resident set size (RSS), sampled
every ~5 ms by a background thread, on CPU (freed heap is handed back with malloc_trim first, so the
baseline is honest); allocated device memory (torch.cuda.max_memory_allocated) on CUDA.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's engine, not the one the editable install points at

import psutil  # noqa: E402
import torch  # noqa: E402

import engine  # noqa: E402
from engine import loading  # noqa: E402

LENGTHS = {"smollm2-135m": [16, 128, 512, 1024, 2048, 4096, 8192], "minilm-l6": [16, 128, 512]}
HF_MAX_TOKENS = 2048  # above this Hugging Face's attentions alone need 30 × 9 × n² floats (18 GB at 4,096)
QUICK_LENGTHS = [16, 128]
PARAGRAPH = (
    "A fluffy blue creature roamed the verdant forest, looking for the old mole who lived under the oak. "
    "The mole had dug a tunnel beneath the garden, and the gardener, who grew tomatoes and tall sunflowers, "
    "was furious. In 1889 the capital of France, Paris, opened its iron tower to visitors; it is 330 metres "
    "tall. Meanwhile, the creature counted: one, two, three, forty-two. \"Where are you?\" it asked the wind.\n"
)
MB = 1024 * 1024


def repeats_for(n_tokens: int, base: int) -> int:
    """Fewer repeats where one call takes seconds."""
    if n_tokens >= 4096:
        return 1
    if n_tokens >= 2048:
        return min(base, 2)
    if n_tokens >= 1024:
        return min(base, 3)
    return base


def token_ids(model: engine.Model, n_tokens: int) -> list[int]:
    """Exactly n_tokens ids of the repeated paragraph; an encoder keeps [CLS] first and [SEP] last."""
    text = PARAGRAPH
    while True:
        ids = model.tokenizer(text, verbose=False)["input_ids"]
        if len(ids) >= n_tokens + 2:
            break
        text += PARAGRAPH
    if model.config.family == "bert":
        return ids[: n_tokens - 1] + [ids[-1]]
    return ids[:n_tokens]


def _malloc_trim():
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return lambda: None
    return lambda: libc.malloc_trim(0)


malloc_trim = _malloc_trim()


class PeakMemory:
    """Peak increase in memory during a `with` block: sampled RSS on CPU, allocator stats on CUDA."""

    def __init__(self, device: torch.device, interval: float = 0.005):
        self.device, self.interval = device, interval
        self.process = psutil.Process()
        self.peak_bytes = 0

    def __enter__(self) -> PeakMemory:
        gc.collect()
        malloc_trim()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return self
        self.base = self.process.memory_info().rss
        self.peak = self.base
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self.base
            return
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)
        self.peak_bytes = self.peak - self.base


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def hf_model(name: str, device: torch.device):
    """The Hugging Face twin of an embedded model, as tests/conftest.py loads it: eager attention, float32."""
    from transformers import AutoModel, AutoModelForCausalLM

    folder = loading.resolve(name, lambda f, m: None)
    cls = AutoModelForCausalLM if name == "smollm2-135m" else AutoModel
    model = cls.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32)
    return model.eval().to(device)


def time_engine(model: engine.Model, ids: list[int]) -> tuple[float, int, int]:
    """(ms, peak bytes, trace bytes) of one traced run."""
    with PeakMemory(model.device) as mem:
        start = time.perf_counter()
        trace = model.run_ids(ids)
        sync(model.device)
        ms = (time.perf_counter() - start) * 1000
    size = trace.nbytes()
    del trace
    return ms, mem.peak_bytes, size


def time_hf(hf, ids: list[int], device: torch.device) -> tuple[float, int, int]:
    """(ms, peak bytes, bytes of the returned attentions + hidden states) of one Hugging Face forward."""
    with PeakMemory(device) as mem, torch.inference_mode():
        start = time.perf_counter()
        out = hf(torch.tensor([ids], device=device), output_attentions=True, output_hidden_states=True)
        sync(device)
        ms = (time.perf_counter() - start) * 1000
    size = sum(t.numel() * t.element_size() for t in (*out.attentions, *out.hidden_states))
    del out
    return ms, mem.peak_bytes, size


def bench_model(name: str, device: torch.device, lengths: list[int], repeats: int) -> list[dict]:
    model = engine.load(name, device=device)
    hf = hf_model(name, device)
    lengths = [n for n in lengths if n <= model.config.max_tokens]
    warm = token_ids(model, 16)
    for _ in range(2):  # first calls pay for kernel selection and allocator growth
        time_engine(model, warm)
        time_hf(hf, warm, device)
    rows = []
    for n in lengths:
        ids = token_ids(model, n)
        assert len(ids) == n
        engine_ms, hf_ms, engine_peak, hf_peak = [], [], [], []
        trace_bytes = hf_bytes = 0
        for _ in range(repeats_for(n, repeats)):
            ms, peak, trace_bytes = time_engine(model, ids)
            engine_ms.append(ms)
            engine_peak.append(peak)
            if n <= HF_MAX_TOKENS:
                ms, peak, hf_bytes = time_hf(hf, ids, device)
                hf_ms.append(ms)
                hf_peak.append(peak)
        row = {
            "model": name, "tokens": n, "repeats": len(engine_ms),
            "engine_ms": statistics.median(engine_ms), "hf_ms": statistics.median(hf_ms) if hf_ms else None,
            "engine_spread": (min(engine_ms), max(engine_ms)),
            "hf_spread": (min(hf_ms), max(hf_ms)) if hf_ms else None,
            "engine_peak": max(engine_peak), "hf_peak": max(hf_peak) if hf_peak else None,
            "trace_bytes": trace_bytes, "hf_bytes": hf_bytes,
        }
        rows.append(row)
        hf_text = f"{row['hf_ms']:9.1f} ms" if hf_ms else "not run"
        print(f"  {name} {n:>5} tokens: engine {row['engine_ms']:9.1f} ms, HF {hf_text} "
              f"({row['repeats']} repeats)", file=sys.stderr, flush=True)
    del model, hf
    gc.collect()
    return rows


def spread(low_high: tuple[float, float] | None) -> str:
    return "—" if low_high is None else f"{low_high[0]:,.0f}–{low_high[1]:,.0f}"


def table(rows: list[dict]) -> str:
    lines = [
        "| model | tokens | engine median ms | engine min–max | HF median ms | HF min–max | engine/HF "
        "| engine peak MB | HF peak MB | trace MB (`nbytes`) | HF outputs MB | repeats |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        hf = r["hf_ms"] is not None
        lines.append(
            f"| {r['model']} | {r['tokens']:,} | {r['engine_ms']:,.1f} | {spread(r['engine_spread'])} "
            f"| {r['hf_ms'] if hf else 0:,.1f} | {spread(r['hf_spread'])} "
            f"| {r['engine_ms'] / r['hf_ms'] if hf else 0:.2f} | {r['engine_peak'] / MB:,.1f} "
            f"| {r['hf_peak'] / MB if hf else 0:,.1f} | {r['trace_bytes'] / MB:,.1f} | {r['hf_bytes'] / MB:,.1f} "
            f"| {r['repeats']} |".replace("| 0.0 |", "| — |").replace("| 0.00 |", "| — |")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--quick", action="store_true", help="only 16 and 128 tokens")
    parser.add_argument("--models", nargs="+", default=list(LENGTHS), choices=list(LENGTHS))
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per length (fewer at 1,024+ tokens)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    device = torch.device(args.device)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"device: {device} ({name}); torch {torch.__version__}; torch threads {torch.get_num_threads()}; "
          f"CPU cores {os.cpu_count()}; Python {platform.python_version()}")
    import transformers

    print(f"transformers {transformers.__version__}; float32; Hugging Face: eager attention, "
          "output_attentions=True, output_hidden_states=True; medians; engine and HF interleaved")
    memory = "allocated CUDA memory" if device.type == "cuda" else "RSS sampled every 5 ms"
    if hasattr(os, "getloadavg"):
        print(f"load average at the start (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"peak MB: largest increase during one call over the level just before it ({memory})\n")
    rows = []
    for model_name in args.models:
        lengths = QUICK_LENGTHS if args.quick else LENGTHS[model_name]
        rows += bench_model(model_name, device, lengths, args.repeats)
    print(table(rows))
    if hasattr(os, "getloadavg"):
        print(f"\nload average at the end (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())} "
              f"on {os.cpu_count()} cores; other processes inflate CPU timings")


if __name__ == "__main__":
    main()
