"""The Head roles tab, role badges on the all-heads grid and the pattern view's value-weighted and sink-free
matrices, through the real app.py with AppTest: the numbers on the page against the engine's, computed here
independently."""

from __future__ import annotations

import re

import numpy as np
import pytest
import test_robustness
from apptest_tools import app_state, charts, decode, heatmap, open_tab, start, table
from streamlit.testing.v1 import AppTest

import engine
from components.labels import position_labels, token_labels
from components.views import _rollout, _sinks
from components.views import pattern as pattern_view
from engine.analysis import icl, pooling, roles, rollout, sinks, value_weighted
from engine.analysis.senses import top_heads

pytestmark = pytest.mark.slow

TEXT = "The gardener trapped the burrowing mole under the old oak"
MODELS = {"smollm2-135m": "smollm", "minilm-l6": "minilm"}


@pytest.fixture(params=list(MODELS))
def model(request) -> engine.Model:
    return request.getfixturevalue(MODELS[request.param])


def no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def heatmaps(fig: dict) -> dict[str, np.ndarray]:
    """A figure's heatmaps by trace name."""
    return {t["name"]: decode(t["z"]) for t in fig["data"] if t["type"] == "heatmap"}


def badges(at: AppTest) -> set[tuple[int, int, str]]:
    """(layer, head, role) of every role badge on the head grid."""
    notes = charts(at)["head_grid_fig"]["layout"].get("annotations", [])
    named = [a["name"].split() for a in notes if a.get("name", "").startswith("badge ")]
    return {(int(where.split(".")[0]), int(where.split(".")[1]), role) for _, where, role in named}


def expected_badges(scores, threshold: float) -> set[tuple[int, int, str]]:
    role, _ = roles.strongest_roles(scores, threshold)
    return {(int(la), int(h), roles.ROLES[role[la, h]]) for la, h in zip(*(role >= 0).nonzero(), strict=True)}


def test_role_maps_equal_the_engine_and_the_switch_turns_the_top_heads_off(model):
    name = model.config.name
    at = start(model=name, tab="roles", text=TEXT)
    no_errors(at)
    want = roles.head_roles(model)
    maps = heatmaps(charts(at)["roles_maps"])
    assert set(maps) == set(roles.ROLES)
    for role in roles.ROLES:
        np.testing.assert_allclose(maps[role], want[role], atol=1e-6)

    top = {(layer, head) for layer, head, _ in top_heads(want["induction"], 3)}
    assert f"{len(top)} heads off" in at.button(key="roles_switch_off").label
    at.button(key="roles_switch_off").click().run()
    no_errors(at)
    assert app_state(at).heads_off == frozenset(top)  # exactly the top heads, for every tab
    assert at.query_params["off"] == ",".join(f"{la}.{h}" for la, h in sorted(top))
    switched = roles.head_roles(model, head_mask=model.head_mask_without(top))
    maps = heatmaps(charts(at)["roles_maps"])
    for role in roles.ROLES:  # the maps now show the run with those heads off
        np.testing.assert_allclose(maps[role], switched[role], atol=1e-6)
    assert at.button(key="roles_switch_off").disabled and not at.button(key="roles_switch_on").disabled
    open_tab(at, "interventions")
    no_errors(at)
    assert f"{len(top)} of {model.config.n_layers * model.config.n_heads} heads off" in " ".join(
        c.value for c in at.caption)
    open_tab(at, "roles")
    at.button(key="roles_switch_on").click().run()
    assert app_state(at).heads_off == frozenset()


def test_switching_the_induction_heads_off_raises_the_second_copys_loss(smollm):
    at = start(tab="roles", text=TEXT)
    no_errors(at)
    reference = roles.head_roles(smollm)
    unmodified = table(at, "roles_icl_table")
    assert list(unmodified["run"]) == ["every head on"]
    at.button(key="roles_switch_off").click().run()
    no_errors(at)
    top = [(layer, head) for layer, head, _ in top_heads(reference["induction"], 3)]
    assert app_state(at).heads_off == frozenset(top)
    want = icl.icl_losses(smollm, roles.standard_probe(smollm), smollm.head_mask_without(top))
    shown = table(at, "roles_icl_table").set_index("run")
    assert shown.loc["with your switches", "second copy (nats)"] == pytest.approx(want.current.second, rel=1e-5)
    assert shown.loc["every head on", "second copy (nats)"] == pytest.approx(want.unmodified.second, rel=1e-5)
    assert shown.loc["with your switches", "first copy (nats)"] == pytest.approx(want.current.first, rel=1e-5)
    assert shown.loc["with your switches", "second copy (nats)"] > shown.loc["every head on", "second copy (nats)"] + 2
    lines = {t["name"]: decode(t["y"]) for t in charts(at)["roles_icl_fig"]["data"] if t.get("showlegend") is not False}
    np.testing.assert_allclose(lines["with your switches"], want.current.per_token, rtol=1e-5)
    np.testing.assert_allclose(lines["every head on"], want.unmodified.per_token, rtol=1e-5)


def test_minilm_explains_the_backward_roles_and_why_there_is_no_loss_check():
    at = start(model="minilm-l6", tab="roles")
    no_errors(at)
    notes = " ".join(i.value for i in at.info)
    assert "runs bidirectionally" in notes and "induction" in notes
    assert "not a causal language model" in notes  # no in-context learning check, and why
    assert "roles_icl_fig" not in charts(at) and "has no such heads" in notes  # its best induction score is ~0.01


def test_the_top_heads_follow_the_role_and_count_and_the_link_keeps_them(smollm):
    at = start(tab="roles", **{"roles.role": "previous_token", "roles.top": "5"})
    no_errors(at)
    want = top_heads(roles.head_roles(smollm)["previous_token"], 5)
    shown = table(at, "roles_top_table")
    assert list(zip(shown["layer"], shown["head"], strict=True)) == [(la, h) for la, h, _ in want]
    np.testing.assert_allclose(shown["every head on"], [s for _, _, s in want], atol=1e-9)
    probe = roles.head_roles(smollm).trace
    thumb = heatmap(charts(at)["roles_thumb_0"])
    np.testing.assert_allclose(thumb, probe["pattern", want[0][0], want[0][1]].numpy(), atol=1e-6)
    assert {"roles_thumb_0", "roles_thumb_4"} <= set(charts(at))
    at.selectbox(key="roles_role").set_value("self").run()
    assert at.query_params["roles.role"] == "self" and at.query_params["roles.top"] == "5"
    bad = start(tab="roles", **{"roles.role": "<b>x</b>", "roles.top": "99", "roles.section": "nope"})
    no_errors(bad)  # a link's bad values fall back to the defaults
    assert len(table(bad, "roles_top_table")) == 3 and "roles_maps" in charts(bad)


def test_the_badge_threshold_changes_which_heads_are_labelled(model):
    at = start(model=model.config.name, tab="heads")
    no_errors(at)
    scores = roles.head_roles(model).scores
    assert badges(at) == expected_badges(scores, 0.5)
    at.select_slider(key="heads_badge_min").set_value(0.8).run()
    no_errors(at)
    high = badges(at)
    assert high == expected_badges(scores, 0.8) and high < expected_badges(scores, 0.5)
    assert at.query_params["heads.badge_min"] == "0.8"
    again = start(model=model.config.name, tab="heads", **{"heads.badge_min": "0.8"})
    assert badges(again) == high  # the link restores the threshold
    for bad in ("7", "abc", "nan"):
        assert badges(start(model=model.config.name, tab="heads", **{"heads.badge_min": bad})) == \
            expected_badges(scores, 0.5)


def test_badges_follow_switched_off_heads(smollm):
    off = {(18, 6), (17, 3), (17, 4)}
    at = start(tab="heads", off=",".join(f"{la}.{h}" for la, h in off))
    no_errors(at)
    want = roles.head_roles(smollm, head_mask=smollm.head_mask_without(off)).scores
    assert badges(at) == expected_badges(want, 0.5)


@pytest.mark.parametrize("show", ["head", "layer"])
def test_value_weighted_attention_equals_the_engine(model, show):
    layer, head = 2, 1
    at = start(model=model.config.name, text=TEXT, layer=layer, head=head, **{"pattern.show": show})
    no_errors(at)
    trace = model.run(TEXT)
    raw = (value_weighted.head_weighted(trace, layer, head) if show == "head"
           else value_weighted.layer_weighted(trace, layer))
    shown = heatmap(charts(at)["pattern_fig"])
    np.testing.assert_allclose(shown, raw, rtol=1e-5, atol=1e-6 * raw.max())
    at.radio(key="pattern_rows").set_value("normalised").run()
    no_errors(at)
    assert at.query_params["pattern.rows"] == "normalised" and at.query_params["pattern.show"] == show
    shown = heatmap(charts(at)["pattern_fig"])
    np.testing.assert_allclose(shown.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(shown, raw / raw.sum(1, keepdims=True), rtol=1e-5, atol=1e-7)
    assert any("Why the first token can take most of α" in c.value for c in at.caption)


def test_the_pattern_without_the_first_key(model):
    layer, head = 3, 2
    at = start(model=model.config.name, text=TEXT, layer=layer, head=head, **{"pattern.show": "no_first"})
    no_errors(at)
    want = sinks.pattern_without_first(model.run(TEXT), layer, head)
    np.testing.assert_allclose(heatmap(charts(at)["pattern_fig"]), want, atol=1e-6)
    assert any(s.value.startswith("Attention pattern without the first key") for s in at.subheader)


def test_long_texts_pool_the_value_weighted_attention_block_by_block(smollm, monkeypatch):
    text = " ".join(["the mole dug a tunnel under the lawn"] * 20)  # ~160 tokens: drawn as images
    layer, head = 4, 3
    at = start(text=text, layer=layer, head=head, **{"pattern.show": "head", "pattern.rows": "normalised"})
    no_errors(at)
    trace = smollm.run(text)
    fig = charts(at)["pattern_fig"]
    assert fig["data"][0]["type"] == "image"
    want = value_weighted.head_weighted(trace, layer, head, normalise=True)
    edges = pooling.pool_edges(trace.n_tokens, 64)
    blocks = np.maximum.reduceat(np.maximum.reduceat(want, edges[:-1], axis=1), edges[:-1], axis=0)
    np.testing.assert_allclose(heatmap(fig), blocks, rtol=1e-4, atol=1e-6)  # the hover blocks
    zoom = heatmap(charts(at)["zoom_pattern_fig"])  # the exact cells of the last 64 tokens
    np.testing.assert_allclose(zoom, want[-64:, -64:], rtol=1e-5, atol=1e-7)

    monkeypatch.setattr(pattern_view, "LAYER_WEIGHTED_MAX", 100)  # the whole layer's is bounded, and says so
    at.radio(key="pattern_show").set_value("layer").run()
    no_errors(at)
    assert any("offered up to 100 tokens" in i.value for i in at.info)
    assert at.query_params["pattern.show"] == "layer"  # the choice stays; this text shows the head's


def test_rollout_rows_sum_to_one_and_equal_the_engine(model):
    at = start(model=model.config.name, text=TEXT, tab="roles", **{"roles.section": "rollout"})
    no_errors(at)
    trace = model.run(TEXT)
    query = at.selectbox(key="roles_rollout_token").value
    for key, weighted in (("roles_rollout_raw", False), ("roles_rollout_weighted", True)):
        shown = heatmap(charts(at)[key])
        assert shown.shape == (model.config.n_layers, trace.n_tokens)
        np.testing.assert_allclose(shown.sum(1), 1.0, atol=1e-5)
        np.testing.assert_allclose(shown, rollout.rollout_from(trace, query, weighted), atol=1e-6)
    at.selectbox(key="roles_rollout_token").set_value(2).run()
    np.testing.assert_allclose(heatmap(charts(at)["roles_rollout_raw"]), rollout.rollout_from(trace, 2), atol=1e-6)
    assert any("is an approximation" in c.value for c in at.caption)


def test_sink_shares_equal_the_engine(model):
    at = start(model=model.config.name, text=TEXT, tab="roles", **{"roles.section": "sinks"})
    no_errors(at)
    want = sinks.first_token_shares(model.run(TEXT))
    np.testing.assert_allclose(heatmap(charts(at)["roles_sink_raw"]), want.raw, atol=1e-6)
    np.testing.assert_allclose(heatmap(charts(at)["roles_sink_weighted"]), want.weighted, atol=1e-6)


def test_long_texts_compute_sinks_and_rollout_only_on_request(monkeypatch):
    monkeypatch.setattr(_sinks, "AUTO_TOKENS", 8)
    monkeypatch.setattr(_rollout, "AUTO_POSITIONS", 8)
    at = start(text=TEXT, tab="roles", **{"roles.section": "sinks"})
    no_errors(at)
    assert "roles_sink_raw" not in charts(at)
    at.toggle(key="roles_sinks_compute").set_value(True).run()
    assert "roles_sink_raw" in charts(at)
    at.radio(key="roles_section").set_value("rollout").run()
    assert "roles_rollout_raw" not in charts(at)
    at.selectbox(key="roles_rollout_token").set_value(5).run()  # 6 positions under the causal mask: at once
    assert "roles_rollout_raw" in charts(at)
    monkeypatch.setattr(_rollout, "MAX_POSITIONS", 4)
    at.run()
    assert "roles_rollout_raw" not in charts(at) and any("at most 4 positions" in i.value for i in at.info)


def assert_literal(at: AppTest, where: str) -> None:
    """No Markdown the page writes and no Plotly string holds live markup (as test_robustness checks each tab)."""
    no_errors(at)
    for _, source in test_robustness.markdown_sources(at):
        assert not re.search(r"[<>$~^]", re.sub(r"\\.|&nbsp;", "", source)), (where, source)
    for key, fig in charts(at).items():
        for text in test_robustness.figure_strings(fig):
            assert not re.search(r"[<>$]", re.sub(r"<br>|<extra></extra>|%\{[^}]*\}", "", text)), (where, key, text)


def test_every_label_stays_literal(smollm):
    """The sentence's markup, in every section of the Head roles tab and every matrix of the pattern view."""
    at = start(text=test_robustness.MARKUP, tab="roles", **{"roles.section": "rollout"})
    assert_literal(at, "rollout")
    hover = charts(at)["roles_rollout_raw"]["data"][0]["customdata"][0]  # every input token, "position: token"
    assert hover == position_labels(smollm.run(test_robustness.MARKUP).tokens)
    for section in ("sinks", "roles"):
        at.radio(key="roles_section").set_value(section).run()
        assert_literal(at, section)
    open_tab(at, "heads")
    assert_literal(at, "heads")
    for show in ("head", "layer", "no_first"):
        page = start(text=test_robustness.MARKUP, **{"pattern.show": show})
        assert_literal(page, show)
        cells = charts(page)["pattern_fig"]["data"][0]["customdata"][0]  # query 0 against every key
        assert [cell[1] for cell in cells] == token_labels(smollm.run(test_robustness.MARKUP).tokens)


tiny_gpt2 = test_robustness.tiny_gpt2  # a random 2-layer GPT-2 folder whose context (64) is shorter than the probe


def test_a_model_too_short_for_the_probe_gets_a_message_and_keeps_its_state(tiny_gpt2, local_server):
    at = start(model=str(tiny_gpt2), tab="roles", text=TEXT, layer=1)
    no_errors(at)
    assert any("Head roles are not available" in i.value and "context" in i.value for i in at.info)
    open_tab(at, "heads")
    no_errors(at)
    assert "head_grid_fig" in charts(at) and not badges(at)
    assert any("No role badges" in c.value for c in at.caption)
    assert (app_state(at).model, app_state(at).layer) == (str(tiny_gpt2), 1)
