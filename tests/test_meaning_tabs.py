"""The meaning tabs (Δe, projections, word senses, parameters) through the real app.py (AppTest) on both embedded
models: default and edited input, and the numbers on the page checked against the engine's own."""

from __future__ import annotations

import numpy as np
import pytest
from apptest_tools import app_state, charts, decode, ok, open_tab, start, table
from streamlit.testing.v1 import AppTest

from components.labels import token_text
from engine.analysis import deltas, lens, projections, senses

pytestmark = pytest.mark.slow
MODELS = ["minilm-l6", "smollm2-135m"]
TEXT = "The gardener trapped the burrowing mole"
LAYER, HEAD = 1, 2
BURROWING = ("a | The rabbit was burrowing under the fence\n"  # "burrowing" is two tokens in both models
             "b | A burrowing owl lives in the desert\n"
             "c | The children were burrowing into the blankets")


def app(model: str, tab: str, text: str = TEXT) -> AppTest:
    return ok(start(model=model, text=text, layer=LAYER, head=HEAD, tab=tab))


def title(at: AppTest, key: str) -> str:
    return (charts(at)[key]["layout"].get("title") or {}).get("text", "")


@pytest.mark.parametrize("model", MODELS)
def test_deltas_tab(model, models):
    at = app(model, "deltas")
    trace = models[model].run(TEXT)
    assert set(charts(at)) == {"deltas_norms", "deltas_sum", "deltas_dims", "deltas_values"}
    norms = decode(charts(at)["deltas_norms"]["data"][0]["z"])  # [n_heads, n] ‖head_out‖ of layer 1
    np.testing.assert_allclose(norms, deltas.head_delta_norms(trace, LAYER), rtol=1e-5, atol=1e-6)
    (check,) = at.metric  # the page's only metric: max |Σ head_out + b_O − attn_out|
    assert check.label.startswith("check") and float(check.value) < 1e-4
    assert any("burrowing" not in m.value and "mole" in m.value for m in at.markdown)  # the last word by default
    at.selectbox(key="deltas_token").set_value(2)
    ok(at.run())
    assert any("Token 2" in m.value for m in at.markdown)
    at.slider(key="deltas_lens_k").set_value(4)
    ok(at.run())
    up = table(at, "deltas_lens_up")
    assert up.shape[0] == 4
    reading = lens.delta_lens(models[model], trace, LAYER, HEAD, 2, 4)["delta"]  # head 2's Δe alone, token 2
    assert [cell.split("  (")[0] for cell in up[f"Δe of head {HEAD}"]] == [token_text(t) for t, _ in reading.up]
    assert table(at, "deltas_lens_down").shape[0] == 4
    if model == "minilm-l6":
        assert any("post-norm" in i.value for i in at.info)
        assert any("W_E" in c.value for c in at.caption)


@pytest.mark.parametrize("model", MODELS)
def test_projections_tab_and_its_link(model, models):
    at = app(model, "projections")
    trace = models[model].run(TEXT)
    fig = charts(at)["projections_qk_fig"]
    assert title(at, "projections_qk_fig").startswith("Queries and keys")
    queries = next(t for t in fig["data"] if t["name"] == "queries")
    expected = projections.qk_projection(trace, LAYER, HEAD, trace.n_tokens - 1, k=3).queries  # [n, 3]
    np.testing.assert_allclose(decode(queries["x"]), expected[:, 0], rtol=1e-4, atol=1e-5)
    assert "projections.mode" not in at.query_params  # defaults stay out of the link

    at.radio(key="projections_what").set_value("delta")
    ok(at.run())
    assert "e → e + Δe of all heads" in title(at, "projections_delta_fig")
    at.selectbox(key="projections_who").set_value(0)
    ok(at.run())
    assert "head 0" in title(at, "projections_delta_fig")
    at.radio(key="projections_what").set_value("path")
    at.radio(key="projections_dims").set_value(3)
    ok(at.run())
    fig = charts(at)["projections_path_fig"]
    assert fig["data"][0]["type"] == "scatter3d"
    assert len(fig["data"][0]["hovertext"]) == (7 if model == "minilm-l6" else 31)  # embedding + each block
    at.multiselect(key="projections_path_tokens").select(1)
    ok(at.run())
    assert len(charts(at)["projections_path_fig"]["data"]) == 2
    assert table(at, "projections_basis").shape[0] == 3  # the basis: three components

    # the mode and the dimensions are in the link, and outlive a visit to another tab
    assert (at.query_params["projections.mode"], at.query_params["projections.dims"]) == ("path", "3")
    open_tab(at, "pattern")
    assert app_state(at).views == {"projections.mode": "path", "projections.dims": 3}
    open_tab(at, "projections")
    assert charts(at)["projections_path_fig"]["data"][0]["type"] == "scatter3d"
    again = ok(start(**{k: at.query_params[k] for k in at.query_params}))
    assert at.radio(key="projections_what").value == again.radio(key="projections_what").value == "path"
    assert again.radio(key="projections_dims").value == 3


@pytest.mark.parametrize("model", MODELS)
def test_senses_tab_default_and_edited(model):
    at = app(model, "senses")
    assert not at.warning
    assert table(at, "senses_sentences").shape[0] == 5  # the five 'mole' sentences
    assert title(at, "senses_sim").startswith("Cosine similarity, after block")
    before = charts(at)["senses_sim"]["data"][0]["z"]
    at.text_area(key="senses_text_mole").input(
        "animal | The mole dug under the lawn\n"
        "chemistry | One mole of carbon weighs twelve grams\n"
        "skin | A mole on the skin, next to another mole")
    ok(at.run())
    assert table(at, "senses_sentences").shape[0] == 3
    assert charts(at)["senses_sim"]["data"][0]["z"] != before
    assert "2 times" in at.selectbox(key="senses_occ_2").label  # the word appears twice: the user picks which
    if model == "smollm2-135m":
        assert any("causal" in i.value for i in at.info)
        lens_table = table(at, "senses_lens").copy()
        at.checkbox(key="senses_mask_off").check()
        ok(at.run())
        assert not table(at, "senses_lens").equals(lens_table)


@pytest.mark.parametrize("model", MODELS)
def test_senses_pooling_changes_the_vectors(model, models):
    """A word split into two tokens: "mean of sub-tokens" gives other vectors than "last sub-token", and the
    similarities on the page are the engine's for the pooling chosen."""
    at = app(model, "senses")
    at.text_area(key="senses_text_mole").input(BURROWING)
    at.text_input(key="senses_word_mole").input("burrowing")
    ok(at.run())
    assert not at.warning
    shown = {}
    for pool in ("last", "mean"):
        at.radio(key="senses_pool").set_value(pool)
        ok(at.run())
        shown[pool] = decode(charts(at)["senses_sim"]["data"][0]["z"])  # [3, 3] at the last layer
        vectors = []
        for line in BURROWING.splitlines():
            text = line.split("|")[1].strip()
            (span,) = senses.find_word(models[model], text, "burrowing")
            assert len(span) == 2
            vectors.append(senses.word_vectors(models[model].run(text), span, pool))
        expected = senses.similarity_by_layer(np.stack(vectors))[-1]  # [3, 3]
        np.testing.assert_allclose(shown[pool], expected, atol=1e-5)
    assert np.abs(shown["mean"] - shown["last"]).max() > 1e-3


def test_senses_tab_missing_word_and_presets():
    at = app("minilm-l6", "senses")
    at.text_input(key="senses_word_mole").input("giraffe")
    ok(at.run())
    assert any("not a whole word" in w.value for w in at.warning)
    assert any("At least two sentences" in w.value for w in at.warning)
    at.selectbox(key="senses_preset").set_value("bank")
    ok(at.run())
    assert not at.warning and table(at, "senses_sentences").shape[0] == 4
    at.select_slider(key="senses_layer").set_value(0)
    ok(at.run())
    assert title(at, "senses_sim") == "Cosine similarity, embedding"


@pytest.mark.parametrize("model", MODELS)
def test_params_tab(model):
    at = app(model, "params")
    counted = table(at, "params_model")  # the numbers behind the formatted table
    total = int(counted.set_index("what").loc["total", "parameters"])
    assert total == {"minilm-l6": 22_565_376, "smollm2-135m": 134_515_008}[model]
    gpt3 = table(at, "params_config").set_index("what")["parameters"]
    assert gpt3["one query or key matrix"] == 1_572_864 and gpt3["one head"] == 6_291_456
    assert gpt3["one block of attention"] == 603_979_776 and gpt3["all attention heads"] == 57_982_058_496
    assert any("Key/value sharing" in i.value for i in at.info) == (model == "smollm2-135m")
    at.number_input(key="params_d_model").set_value(768)
    at.number_input(key="params_d_head").set_value(64)
    at.number_input(key="params_n_heads").set_value(12)
    at.number_input(key="params_n_layers").set_value(12)
    ok(at.run())
    mine = table(at, "params_config").set_index("what")["parameters"]
    assert mine["all attention heads"] == 12 * 12 * 4 * 768 * 64  # GPT-2 small's attention, counted the same way
    assert "total, as published" not in mine.index
