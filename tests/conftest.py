"""Shared fixtures: the embedded models (loaded once per test session) and their Hugging Face twins."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # CI has no network: never wait on the hub by accident
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import engine  # noqa: E402
from engine import loading  # noqa: E402


@pytest.fixture(scope="session")
def smollm() -> engine.Model:
    return engine.load("smollm2-135m", device="cpu")


@pytest.fixture(scope="session")
def minilm() -> engine.Model:
    return engine.load("minilm-l6", device="cpu")


@pytest.fixture(scope="module")
def models(smollm, minilm) -> dict[str, engine.Model]:
    """Both embedded models by name."""
    return {"smollm2-135m": smollm, "minilm-l6": minilm}


def hf_model(name: str):
    """The Hugging Face reference for an embedded model, eager attention, float32."""
    from transformers import AutoModel, AutoModelForCausalLM

    folder = loading.resolve(name, lambda f, m: None)
    cls = AutoModelForCausalLM if name == "smollm2-135m" else AutoModel
    model = cls.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32)
    return model.eval()


@pytest.fixture(scope="session")
def smollm_hf():
    return hf_model("smollm2-135m")


@pytest.fixture(scope="session")
def minilm_hf():
    return hf_model("minilm-l6")


@pytest.fixture
def local_server():
    """A server listening on localhost, as `bash scripts/run.sh` starts it: local folders are allowed by default.
    (On any other address every path gets one message: tests/test_local_folders.py.)"""
    from streamlit import config

    before = config.get_option("server.address")
    config.set_option("server.address", "127.0.0.1")
    yield
    config.set_option("server.address", before)


@pytest.fixture(scope="session")
def app_server(tmp_path_factory):
    """(URL, log file) of one `streamlit run app.py` that every browser test module shares, as visitors share a
    server; skipped where Debian's Chromium is missing."""
    from tests.browser import CHROMIUM, streamlit_server

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: `bash scripts/setup.sh --dev` installs Debian's chromium")
    log = tmp_path_factory.mktemp("server") / "streamlit.log"
    with streamlit_server(log) as url:
        yield url, log
