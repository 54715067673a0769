"""The Why tab through the real app.py with AppTest: its numbers against the trace and weights (the logit
difference from the logits, the score from q and k, the ablation check from runs with the head switched off), its
choices in the link, and bad choices (a position outside the text, a token not in the vocabulary) as messages."""

from __future__ import annotations

import numpy as np
import pytest
from apptest_tools import app_state, charts, decode, heatmap, start, table
from streamlit.testing.v1 import AppTest

import engine
from components.views.registry import label

pytestmark = pytest.mark.slow

TEXT = "The capital of France is Paris, and the capital of Germany is"


def no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def metric(at: AppTest, start_of_label: str) -> float:
    found = [m for m in at.metric if m.label.replace("\\", "").startswith(start_of_label)]
    assert found, [m.label for m in at.metric]
    return float(found[0].value)


def test_prediction_numbers_and_choices(smollm):
    at = start(tab="why", text=TEXT)
    no_errors(at)
    trace = smollm.run(TEXT)
    logits = trace.logits_at(-1).double()
    top = logits.topk(2).indices.tolist()
    expected = float(logits[top[0]] - logits[top[1]])  # the run's logits: top prediction minus the second
    assert abs(metric(at, "logit(") - expected) < 1e-3
    assert abs(metric(at, "sum of all parts") - expected) < 1e-3
    a = engine.logit_attribution(smollm, trace, trace.n_tokens - 1, top[0], top[1])
    np.testing.assert_allclose(heatmap(charts(at)["why_heads_map"]), a.heads, atol=1e-5)
    bars = charts(at)["why_by_source"]["data"][0]
    layer, head = app_state(at).layer, app_state(at).head
    np.testing.assert_allclose(decode(bars["x"]), a.heads_by_source[layer, head], atol=1e-6)
    assert abs(decode(bars["x"]).sum() - a.heads[layer, head]) < 1e-5  # the bars add up to the head's part

    # a typed token becomes the target and goes into the link; the baseline "none": the target's logit alone
    lyon = smollm.tokenizer(" Lyon", add_special_tokens=False)["input_ids"][0]
    at.text_input(key="why_typed").set_value(" Lyon").run()
    at.selectbox(key="why_baseline").set_value(-2).run()
    no_errors(at)
    assert at.query_params["why.target"] == str(lyon) and at.query_params["why.baseline"] == "-2"
    assert abs(metric(at, "logit(") - float(logits[lyon])) < 1e-3

    # several tokens typed: a message, the target kept
    at.text_input(key="why_typed").set_value("Parisxyzzy").run()
    no_errors(at)
    assert any("not one token" in w.value for w in at.warning)
    assert at.query_params["why.target"] == str(lyon)

    # the head button opens the pattern view on that head
    at.selectbox(key="why_head").set_value((20, 3)).run()
    at.button(key="why_open_head").click().run()
    no_errors(at)
    s = app_state(at)
    assert (s.layer, s.head) == (20, 3) and s.tab == "pattern"
    assert at.session_state["tab"] == label("pattern")


def test_bad_link_choices_are_messages_and_the_view_stays(smollm):
    at = start(tab="why", text=TEXT, **{"why.position": "99", "why.target": str(10**9)})
    no_errors(at)
    warnings = " ".join(w.value for w in at.warning)
    assert "outside this" in warnings and "not in" in warnings
    assert "why_heads_map" in charts(at)  # the view is drawn with the defaults

    # a link at position 4 with a chosen target and baseline
    paris = smollm.tokenizer(" Paris", add_special_tokens=False)["input_ids"][0]
    at = start(tab="why", text=TEXT, **{"why.position": "4", "why.target": str(paris), "why.baseline": "-2"})
    no_errors(at)
    trace = smollm.run(TEXT)
    assert abs(metric(at, "logit(") - float(trace.logits_at(4)[paris])) < 1e-3


@pytest.mark.parametrize("name", ["smollm2-135m", "minilm-l6"])
def test_score_section(name, smollm, minilm):
    model = {"smollm2-135m": smollm, "minilm-l6": minilm}[name]
    at = start(tab="why", text=TEXT, model=name, layer="3", head="2", **{"why.section": "score"})
    no_errors(at)
    trace = model.run(TEXT)
    query = trace.n_tokens - 1
    strongest = int(trace["pattern", 3, 2][query].argmax())
    assert at.selectbox(key="why_key").value == strongest
    score = float(trace["scores", 3, 2][query, strongest])
    assert abs(metric(at, "score of head 3.2") - score) < 1e-3
    terms = heatmap(charts(at)["why_terms"])
    assert abs(terms.sum() - score) < 1e-3 * max(1, abs(score))  # the terms add up to the score
    largest = table(at, "why_terms_table")
    assert abs(abs(largest["term"].iloc[0]) - np.abs(terms).max()) < 1e-5
    assert any("side of this score comes mostly from" in m.value for m in at.markdown)

    at.selectbox(key="why_key").set_value(1).run()  # another key, kept in the link
    no_errors(at)
    assert at.query_params["why.key"] == "1"
    assert abs(metric(at, "score of head 3.2") - float(trace["scores", 3, 2][query, 1])) < 1e-3
    at.selectbox(key="why_layer").set_value(5).run()  # the layer is the app's layer
    assert app_state(at).layer == 5


def test_flow_route_and_the_ablation_check(smollm):
    text = "The capital of France is"
    at = start(tab="why", text=text, **{"why.section": "flow", "why.threshold": "0.1"})
    no_errors(at)
    trace = smollm.run(text)
    route = engine.flow_route(smollm, trace, trace.n_tokens - 1, 0.1)
    fig = charts(at)["why_flow"]
    dots = [t for t in fig["data"] if t.get("mode") == "markers"][0]
    heads = route.head_edges()
    assert sorted(map(tuple, dots["customdata"])) == sorted((e.layer, e.head) for e in heads)

    at.toggle(key="why_check").set_value(True).run()
    no_errors(at)
    assert at.query_params["why.check"] == "1"
    checked = table(at, "why_check_table")
    top = trace.logits_at(-1).double().topk(2).indices.tolist()

    def difference(t: engine.Trace) -> float:
        logits = t.logits_at(-1).double()
        return float(logits[top[0]] - logits[top[1]])

    for (_, row), e in zip(checked.iterrows(), heads[:10], strict=True):
        assert abs(row["share"] - e.share) < 1e-6
        off = smollm.run(text, head_mask=smollm.head_mask_without([(e.layer, e.head)]))
        assert abs(row["change when the head is off"] - (difference(off) - difference(trace))) < 1e-3


def test_minilm_has_no_prediction_to_explain(minilm):
    at = start(tab="why", model="minilm-l6", text="the river bank was muddy")
    no_errors(at)
    assert any("no language-model head" in i.value.replace("\\", "") for i in at.info)
    at.radio(key="why_section").set_value("flow").run()
    no_errors(at)
    assert "why_flow" in charts(at)


def test_a_long_text_gets_the_route_on_request(smollm, monkeypatch):
    from components.views import why

    monkeypatch.setattr(why, "ROUTE_AUTO", 4)  # "long" from 5 tokens on, so the test stays quick
    text = "The capital of France is"
    at = start(tab="why", text=text, **{"why.section": "flow", "why.threshold": "0.2"})
    no_errors(at)
    assert "why_flow" not in charts(at)
    at.toggle(key="why_route").set_value(True).run()
    no_errors(at)
    trace = smollm.run(text)
    route = engine.flow_route(smollm, trace, trace.n_tokens - 1, 0.2)
    dots = [t for t in charts(at)["why_flow"]["data"] if t.get("mode") == "markers"]
    got = sorted(map(tuple, dots[0]["customdata"])) if dots else []
    assert got == sorted((e.layer, e.head) for e in route.head_edges())
