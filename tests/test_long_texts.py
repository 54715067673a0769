"""Long texts: 2,048 and 8,192 tokens (SmolLM2's whole context) through the engine and the app with bounded payloads;
the run cache evicts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from apptest_tools import decode, open_tab
from streamlit.testing.v1 import AppTest

import engine
from engine.serving.cache import RunCache

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PARAGRAPH = ("The mole dug a tunnel under the garden, and the gardener, who had planted roses there in spring, "
             "was furious about it. ")
LONG_TEXT = PARAGRAPH * 120  # about 2,900 tokens: cut to 2,048

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def long_trace(smollm) -> engine.Trace:
    return smollm.run(LONG_TEXT, max_tokens=2048)


def test_2048_tokens_run_through_the_engine(long_trace):
    trace = long_trace
    assert trace.n_tokens == 2048 and trace.truncated and trace.n_tokens_in_text > 2048
    assert trace.nbytes() < 1.2e9  # patterns are computed on access: 30 × 9 × 2048² floats are never stored
    for layer in (0, 15, 29):
        pattern = trace["pattern", layer]  # float32 view of the float16 store
        assert torch.isfinite(pattern).all() and (pattern >= 0).all()
        assert torch.allclose(pattern.sum(-1), torch.ones(9, 2048), atol=2e-2)
        assert (pattern.triu(1) == 0).all()


def spec_sizes(at: AppTest) -> dict[str, int]:
    return {el.proto.id.rsplit("-", 1)[-1]: len(el.proto.spec) for el in at.get("plotly_chart")}


def test_2048_tokens_run_through_the_app_with_small_figures(monkeypatch):
    monkeypatch.setenv("ATTN_EXPLORER_MAX_TOKENS", "2048")
    at = AppTest.from_file(APP, default_timeout=900)
    at.query_params["text"] = LONG_TEXT
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("2,048 were used" in i.value for i in at.info)
    sizes = spec_sizes(at)
    assert 0 < sizes["pattern_fig"] < 5e6 and 0 < sizes["scores_fig"] < 5e6
    assert "zoom_pattern_fig" in sizes  # a window of the long pattern, token by token
    zoom = json.loads(next(el.proto.spec for el in at.get("plotly_chart") if el.proto.id.endswith("zoom_pattern_fig")))
    assert zoom["data"][0]["type"] == "heatmap" and zoom["layout"]["xaxis"]["range"][1] == pytest.approx(2047.5)
    open_tab(at, "heads")
    assert not at.exception, [e.value for e in at.exception]
    assert 0 < spec_sizes(at)["head_grid_fig"] < 2e6


def test_8192_tokens_smollm2s_whole_context_run_through_the_app(monkeypatch):
    """SmolLM2's full context: the run fits its memory estimate, the pattern and scores come as images pooled
    block by block, the zoom window reads exact cells and sums with the pattern's rows, payloads stay small."""
    monkeypatch.setenv("ATTN_EXPLORER_MAX_TOKENS", "8192")
    monkeypatch.setenv("ATTN_EXPLORER_MAX_CHARS", "100000")
    at = AppTest.from_file(APP, default_timeout=1200)
    at.query_params["text"] = PARAGRAPH * 400  # about 9,600 tokens
    at.query_params["layer"] = "20"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("the first 8,192 were used" in i.value for i in at.info)
    figures = {el.proto.id.rsplit("-", 1)[-1]: json.loads(el.proto.spec) for el in at.get("plotly_chart")}
    for key in ("pattern_fig", "scores_fig"):
        assert figures[key]["data"][0]["type"] == "image" and len(json.dumps(figures[key])) < 5e6
        assert figures[key]["layout"]["xaxis"]["range"][1] == pytest.approx(8191.5)
    zoom = figures["zoom_pattern_fig"]["data"][0]
    assert zoom["type"] == "heatmap" and figures["zoom_pattern_fig"]["layout"]["xaxis"]["range"][1] == \
        pytest.approx(8191.5)
    window = decode(zoom["z"])  # [64, 64]: the last 64 queries against the last 64 keys
    assert window.shape == (64, 64) and (np.triu(window, 1) == 0).all() and (window.sum(1) <= 1 + 1e-5).all()


def test_the_run_cache_evicts_by_entries_and_bytes(minilm):
    traces = {text: minilm.run(text) for text in ("one mole", "two moles here", "three moles dug a hole")}
    cache = RunCache(budget_bytes=10**12, max_entries=2)
    for text, trace in traces.items():
        assert cache.get(text, lambda cancel, prefix, t=trace: t, 1) is trace
    assert len(cache) == 2 and "one mole" not in cache and "three moles dug a hole" in cache
    calls = []
    cache.get("two moles here", lambda cancel, prefix: calls.append(1), 1)  # a hit: not recomputed
    assert not calls

    sizes = [t.nbytes() for t in traces.values()]
    budget = sizes[1] + sizes[2]  # room for the two newest, not for all three
    by_bytes = RunCache(budget_bytes=budget, max_entries=100)
    for text, trace in traces.items():
        by_bytes.get(text, lambda cancel, prefix, t=trace: t, 1)
    assert len(by_bytes) == 2 and by_bytes.nbytes <= budget < sum(sizes)
    assert "one mole" not in by_bytes and "three moles dug a hole" in by_bytes
