"""Operator settings, from environment variables (or .streamlit/secrets.toml keys of the same name)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from engine.serving.memory import default_budget_bytes


def _raw(name: str) -> str | None:
    if name in os.environ:
        return os.environ[name]
    try:
        import streamlit as st

        value = st.secrets.get(name)
        return None if value is None else str(value)
    except Exception:  # no secrets file: that is the usual case
        return None


def _int(name: str, default: int) -> int:
    raw = _raw(name)
    try:
        return max(1, int(raw)) if raw is not None else default
    except ValueError:
        return default


def _bool(name: str, default: bool) -> bool:
    raw = _raw(name)
    return default if raw is None else raw.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    max_tokens: int  # longest input the engine runs (texts are cut to it)
    max_chars: int  # longest text accepted before tokenization
    allow_custom_models: bool  # may visitors load hub ids or local folders?
    device: str | None  # "cpu", "cuda", ...; None = best available
    max_params: int  # largest model (parameters) a visitor may load
    trace_cache_entries: int  # finished runs kept (also bounded by memory_mb)
    memory_mb: int  # memory for runs in flight and finished runs together; runs that do not fit wait
    runs_per_minute: int  # new runs one visitor may start per minute


def load() -> Settings:
    return Settings(
        max_tokens=_int("ATTN_EXPLORER_MAX_TOKENS", 2048),
        max_chars=_int("ATTN_EXPLORER_MAX_CHARS", 20_000),
        allow_custom_models=_bool("ATTN_EXPLORER_ALLOW_CUSTOM_MODELS", True),
        device=_raw("ATTN_EXPLORER_DEVICE") or None,
        max_params=_int("ATTN_EXPLORER_MAX_PARAMS_M", 1_000) * 1_000_000,
        trace_cache_entries=_int("ATTN_EXPLORER_TRACE_CACHE_ENTRIES", 64),
        memory_mb=_int("ATTN_EXPLORER_MEMORY_MB", default_budget_bytes() >> 20),
        runs_per_minute=_int("ATTN_EXPLORER_RUNS_PER_MINUTE", 30),
    )
