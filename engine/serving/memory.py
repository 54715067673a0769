"""How much memory a run needs: the trace it keeps, and the peak while it computes.

A trace stores, per layer, resid_pre, q, the key/value heads, z, attn_out and mlp_out (and resid_mid for
post-norm models), plus the last and final residuals: `trace_bytes` counts exactly that. While a layer is
computed, its temporaries (normed input, repeated keys and values, the MLP's hidden activations, fused
attention's workspace) come on top. Measured peak RSS rise of one run on CPU (bench/bench_engine.py, the
`peak MB` column): SmolLM2-135M 1.5-1.7 × its trace bytes from 512 to 8,192 tokens, MiniLM-L6 1.7-1.9 × at
128 and 512 tokens. `run_bytes` reserves PEAK_FACTOR × the trace bytes plus a fixed allowance, which
covers both (tests/test_serving.py checks it against measured runs).
"""

from __future__ import annotations

import os

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


def default_budget_bytes() -> int:
    """Half the machine's memory: the rest is for the loaded models, the server and the system."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return max(total // 2, 1 << 30)
