"""A tiny checkpoint of every family loaded through the app (a local folder on a localhost server): every tab
shows without an exception, and the pattern tab draws the model's pattern."""

from __future__ import annotations

import numpy as np
import pytest
from apptest_tools import open_tab, start
from families import CASES, build
from test_robustness import check_page, no_errors

import engine
from components.views.registry import VIEWS

pytestmark = pytest.mark.slow
TEXT = "The mole dug a tunnel under the lawn and the gardener was furious"


@pytest.mark.parametrize("case", [c for c in CASES if c != "gpt_neox_sequential"])
def test_every_tab_shows_a_tiny_checkpoint_of_each_family(case, tmp_path, local_server):
    build(case, tmp_path)
    at = start(model=str(tmp_path), text=TEXT, layer=1, head=1)  # layer 1 has a window where the family has one
    z = check_page(at)
    trace = engine.load(str(tmp_path), device="cpu").run(TEXT)
    assert np.allclose(z, trace["pattern", 1, 1].numpy(), atol=1e-5)
    for view in VIEWS:
        open_tab(at, view.id)
        no_errors(at)


def metric(at, start_of_label: str) -> float:
    found = [m for m in at.metric if m.label.replace("\\", "").startswith(start_of_label)]
    assert found, [m.label for m in at.metric]
    return float(found[0].value)


@pytest.mark.parametrize("case", ["gemma2", "gpt_neox", "olmo2"])
def test_why_tab_shows_numbers_on_families(case, tmp_path, local_server):
    """Soft-caps, windows and sandwich norms (Gemma 2), a parallel block (GPT-NeoX), output norms and q/k norms
    over the projection (OLMo 2): the Why tab shows the numbers, not a refusal, each checked against the run."""
    import torch
    from apptest_tools import charts, heatmap

    build(case, tmp_path)
    model = engine.load(str(tmp_path), device="cpu")
    trace = model.run(TEXT)
    cfg, u = model.config, trace.weights.unembed
    at = start(model=str(tmp_path), text=TEXT, tab="why")
    no_errors(at)
    assert not [i.value for i in at.info if "not available" in i.value]
    logits = trace.resid_final[-1].double() @ u.W_U.double()  # before a final soft-cap
    logits = logits if u.b_U is None else logits + u.b_U.double()
    top = trace.logits_at(-1).topk(2).indices.tolist()  # the top two of the capped logits: the same order
    expected = float(logits[top[0]] - logits[top[1]])
    assert abs(metric(at, "logit(") - expected) < 1e-3 and abs(metric(at, "sum of all parts") - expected) < 1e-3
    if cfg.final_softcap:
        assert any("soft-caps its logits" in c.value.replace("\\", "") for c in at.caption)

    at = start(model=str(tmp_path), text=TEXT, tab="why", layer="2", head="1", **{"why.section": "score"})
    no_errors(at)
    assert not [i.value for i in at.info if "not available" in i.value]
    query, key = trace.n_tokens - 1, int(at.selectbox(key="why_key").value)
    q, k = trace["q", 2][1, query].double(), trace["k", 2][1, key].double()
    uncapped = float(q @ k) * (cfg.attn_scale or cfg.d_head ** -0.5)
    assert abs(metric(at, "score of head 2.1") - float(trace["scores", 2, 1][query, key])) < 1e-3
    assert abs(float(heatmap(charts(at)["why_terms"]).sum()) - uncapped) < 1e-3 * max(1, abs(uncapped))
    if cfg.attn_softcap:
        cap = cfg.attn_softcap
        assert abs(cap * float(torch.tanh(torch.tensor(uncapped / cap))) - metric(at, "score of head 2.1")) < 1e-3
        assert any("soft-caps its scores" in c.value.replace("\\", "") for c in at.caption)

    at = start(model=str(tmp_path), text=TEXT, tab="why", **{"why.section": "flow", "why.threshold": "0.1"})
    no_errors(at)
    assert "why_flow" in charts(at)
    if cfg.parallel:
        assert any("in parallel" in c.value.replace("\\", "") for c in at.caption)
