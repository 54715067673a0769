"""Operator settings, from environment variables (or .streamlit/secrets.toml keys of the same name).

Local folders are allowed by default only on a server that listens on a loopback address (Streamlit's
`server.address` set to localhost, 127.x.x.x or ::1, as `bash scripts/run.sh` does): there the visitor is the
operator at their own machine. Unset, Streamlit listens on every interface, so the server counts as public.
"""

from __future__ import annotations

import ipaddress
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


def _float(name: str, default: float) -> float:
    raw = _raw(name)
    try:
        value = float(raw) if raw is not None else default
    except ValueError:
        return default
    return value if 0 < value < float("inf") else default


def _bool(name: str, default: bool) -> bool:
    raw = _raw(name)
    return default if raw is None else raw.strip().lower() in ("1", "true", "yes", "on")


def server_is_local() -> bool:
    """True only when Streamlit's server.address is explicitly a loopback address (localhost, 127.x.x.x, ::1).
    Unset or empty, Streamlit listens on every interface: visitors may come from the network."""
    try:
        import streamlit as st

        address = st.get_option("server.address")
    except Exception:  # noqa: BLE001 - no Streamlit configuration: assume the server is public
        return False
    address = str(address or "").strip().strip("[]").lower()
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:  # empty, a host name, 0.0.0.0 is valid but not loopback
        return False


@dataclass(frozen=True)
class Settings:
    max_tokens: int  # longest input the engine runs (texts are cut to it)
    max_chars: int  # longest text accepted before tokenization
    allow_custom_models: bool  # may visitors name models beyond the embedded ones (hub ids; folders below)?
    allow_local_folders: bool  # may visitors load folders on the server's disk (never without custom models)?
    model_cache_bytes: int  # disk budget for downloaded hub models (least recently used removed)
    device: str | None  # "cpu", "cuda", ...; None = best available
    max_params: int  # largest model (parameters) a visitor may load
    trace_cache_entries: int  # finished runs kept (also bounded by memory_mb)
    memory_mb: int  # memory for runs in flight and finished runs together; runs that do not fit wait
    runs_per_minute: int  # new runs one visitor may start per minute
    trust_forwarded: bool = False  # is the visitor the X-Forwarded-For client (a trusted balancer in front)?
    corpus_max_texts: int = 1_000  # texts of a corpus (an upload's further lines are left out)
    corpus_max_tokens: int = 64  # tokens per corpus text (longer texts are cut)
    corpus_upload_bytes: int = 2 << 20  # largest corpus file a visitor may upload
    ray_address: str = ""  # empty: corpus runs in the server process; "auto", "host:port", "ray://host:port": Ray

    def load_options(self) -> dict:
        """Keyword arguments for engine.load that carry this server's limits and policy."""
        return {"device": self.device, "max_params": self.max_params, "allow_hub": self.allow_custom_models,
                "allow_local_folders": self.allow_local_folders, "model_cache_bytes": self.model_cache_bytes}


# The longest input by default: SmolLM2's whole context where a CUDA GPU runs the engine; on a CPU, where an
# 8,192-token run takes ~40 s and ~5 GB and a 4,096-token one ~10 s and ~2.3 GB (README, "Benchmarks"), half of it
# keeps the page responsive. The operator's ATTN_EXPLORER_MAX_TOKENS wins either way.
CPU_MAX_TOKENS, GPU_MAX_TOKENS = 4096, 8192


def default_max_tokens(device: str | None) -> int:
    """GPU_MAX_TOKENS when runs go to a CUDA device (the one named, else the best available), else CPU_MAX_TOKENS."""
    import torch

    on_gpu = device.startswith("cuda") if device else torch.cuda.is_available()
    return GPU_MAX_TOKENS if on_gpu else CPU_MAX_TOKENS


def load() -> Settings:
    custom = _bool("ATTN_EXPLORER_ALLOW_CUSTOM_MODELS", True)
    device = _raw("ATTN_EXPLORER_DEVICE") or None
    return Settings(
        max_tokens=_int("ATTN_EXPLORER_MAX_TOKENS", default_max_tokens(device)),
        max_chars=_int("ATTN_EXPLORER_MAX_CHARS", 20_000),
        allow_custom_models=custom,
        allow_local_folders=custom and _bool("ATTN_EXPLORER_ALLOW_LOCAL_FOLDERS", server_is_local()),
        model_cache_bytes=int(_float("ATTN_EXPLORER_MODEL_CACHE_GB", 20.0) * 1e9),
        device=device,
        max_params=_int("ATTN_EXPLORER_MAX_PARAMS_M", 1_000) * 1_000_000,
        trace_cache_entries=_int("ATTN_EXPLORER_TRACE_CACHE_ENTRIES", 64),
        memory_mb=_int("ATTN_EXPLORER_MEMORY_MB", default_budget_bytes() >> 20),
        runs_per_minute=_int("ATTN_EXPLORER_RUNS_PER_MINUTE", 30),
        trust_forwarded=_bool("ATTN_EXPLORER_TRUST_FORWARDED", False),
        corpus_max_texts=_int("ATTN_EXPLORER_CORPUS_MAX_TEXTS", 1_000),
        corpus_max_tokens=_int("ATTN_EXPLORER_CORPUS_MAX_TOKENS", 64),
        corpus_upload_bytes=int(_float("ATTN_EXPLORER_CORPUS_UPLOAD_MB", 2.0) * (1 << 20)),
        ray_address=(_raw("ATTN_EXPLORER_RAY_ADDRESS") or "").strip(),
    )
