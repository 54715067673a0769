"""How much memory a run needs (the trace it keeps, and the peak while it computes), and what the server holds.

A trace stores, per layer, resid_pre, q, the key/value heads, z, attn_out and mlp_out (and resid_mid for
post-norm models), plus the last and final residuals: `trace_bytes` counts exactly that. While a layer is
computed, its temporaries (normed input, repeated keys and values, the MLP's hidden activations, fused
attention's workspace) come on top. Measured peak RSS rise of one run on CPU (bench/bench_engine.py, the
`peak MB` column): SmolLM2-135M 1.5-1.7 × its trace bytes from 512 to 8,192 tokens, MiniLM-L6 1.7-1.9 × at
128 and 512 tokens. `run_bytes` reserves PEAK_FACTOR × the trace bytes plus a fixed allowance, which
covers both (tests/test_serving.py checks it against measured runs).

What the server really holds is measured too (`resident_bytes`: the process's RSS, or the working set of its
cgroup where a cgroup limit applies), and glibc's allocator is asked to give freed pages back (`trim`,
`limit_arenas`), so that the run cache's admission can count what the estimates miss (engine/serving/cache.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from functools import cache
from pathlib import Path

import psutil

from ..config import ModelConfig

PEAK_FACTOR = 2.0  # peak RSS rise / trace bytes: at most 1.9 measured (MiniLM-L6), with a margin
FIXED_BYTES = 64 << 20  # per run: the tokenizer, the last position's logits, allocator slack


def trace_bytes(cfg: ModelConfig, n_tokens: int, dtype_bytes: int = 4) -> int:
    """Bytes a finished trace of n_tokens holds."""
    per_layer = (4 * cfg.d_model  # resid_pre, attn_out, mlp_out, and resid_mid below for post-norm models
                 + 2 * cfg.n_heads * cfg.d_head  # q, z
                 + 2 * cfg.n_kv_heads * cfg.d_head)  # k, v (shared heads stored once)
    if cfg.norm_placement == "pre":
        per_layer -= cfg.d_model  # resid_mid = resid_pre + attn_out, computed on access
    final = 2 * cfg.d_model if cfg.norm_placement == "pre" else cfg.d_model  # post-norm: resid_final is resid_last
    return n_tokens * dtype_bytes * (cfg.n_layers * per_layer + final)


def run_bytes(cfg: ModelConfig, n_tokens: int, dtype_bytes: int = 4) -> int:
    """Bytes to reserve for one run: its peak while computing (the trace included)."""
    return int(PEAK_FACTOR * trace_bytes(cfg, n_tokens, dtype_bytes)) + FIXED_BYTES


def sweep_bytes(cfg: ModelConfig, n_tokens: int, n_cells: int, causal: bool, max_batch_tokens: int = 4096,
                dtype_bytes: int = 4) -> int:
    """Bytes to reserve for a patching sweep of n_cells patched runs of an n_tokens text
    (engine.analysis.compare.patched_targets): batches of variants computing one position each (causal) or
    every position, one layer at a time, nothing recorded. Per computed row: the residual and its norms, q/k/v,
    the MLP's hidden activations and a row of scores and pattern per head."""
    m = 1 if causal else n_tokens
    rows = min(n_cells, max(1, max_batch_tokens // m)) * m
    per_row = 8 * cfg.d_model + 3 * cfg.d_mlp + 4 * cfg.n_heads * cfg.d_head + 3 * cfg.n_heads * n_tokens
    return int(PEAK_FACTOR * rows * per_row * dtype_bytes) + FIXED_BYTES


def default_budget_bytes() -> int:
    """Half the machine's memory: the rest is for the loaded models, the server and the system."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return max(total // 2, 1 << 30)


# ---- what the server holds, measured -----------------------------------------------------------------------

NO_LIMIT = 1 << 60  # cgroup v1 writes "no limit" as a number near 2**63


def cgroup_working_set(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Bytes the process's cgroup holds without its inactive file cache (what the kernel's memory limit acts on),
    or None where no cgroup memory limit applies. cgroup v2 (memory.max) or v1 (memory/memory.limit_in_bytes)."""
    for folder, limit, usage, inactive in ((root, "memory.max", "memory.current", "inactive_file"),
                                           (root / "memory", "memory.limit_in_bytes", "memory.usage_in_bytes",
                                            "total_inactive_file")):
        try:
            raw = (folder / limit).read_text().strip()
            if raw == "max" or int(raw) >= NO_LIMIT:
                return None
            used = int((folder / usage).read_text())
            stat = dict(line.split() for line in (folder / "memory.stat").read_text().splitlines() if " " in line)
            return max(used - int(stat.get(inactive, 0)), 0)
        except (OSError, ValueError):
            continue
    return None


def resident_bytes() -> int:
    """What the server holds now: its cgroup's working set where a cgroup limit applies (the server is alone in
    its container), else the process's resident set size."""
    working_set = cgroup_working_set()
    return working_set if working_set is not None else psutil.Process().memory_info().rss


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc only (musl, macOS: none)
        return libc
    except (OSError, AttributeError):
        return None


def trim() -> bool:
    """Give the allocator's free pages back to the system (glibc `malloc_trim(0)`: every arena, and the free
    pages in the middle of its heaps). False where the C library has no malloc_trim."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


M_ARENA_MAX = -8  # glibc mallopt parameter


def limit_arenas(n: int = 2) -> bool:
    """At most n malloc arenas for the threads created from now on (glibc's default is 8 per core): freed memory
    of one run's thread is reused by the next run instead of staying in an arena of its own. The same as
    MALLOC_ARENA_MAX=n in the environment. False where not glibc."""
    libc = _libc()
    return libc is not None and bool(libc.mallopt(M_ARENA_MAX, n))
