"""AppTest flows for the meaning tabs (Δe, projections, word senses, parameters) on both embedded models."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

MODELS = ["minilm-l6", "smollm2-135m"]


def _script(model_name: str, module_name: str, text: str) -> None:
    """The app in miniature: a cached model and cached runs, then one tab's render function."""
    import importlib

    import streamlit as st

    import engine

    @st.cache_resource
    def get(name: str) -> engine.Model:
        return engine.load(name, device="cpu")

    @st.cache_resource(max_entries=64)
    def run_cached(name: str, sentence: str, causal: bool | None) -> engine.Trace:
        return get(name).run(sentence, causal=causal)

    def run(sentence: str, causal: bool | None) -> engine.Trace:
        return run_cached(model_name, sentence, causal)

    module = importlib.import_module(f"components.{module_name}")
    module.render(get(model_name), run(text, None), run, layer=1, head=2, key=module_name)


def app(model: str, module: str, text: str = "The gardener trapped the burrowing mole") -> AppTest:
    at = AppTest.from_function(_script, args=(model, module, text), default_timeout=180)
    return at.run()


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def titles(at: AppTest) -> list[str]:
    return [(c["layout"].get("title") or {}).get("text", "") for c in charts(at)]


@pytest.mark.parametrize("model", MODELS)
def test_deltas_tab(model):
    at = ok(app(model, "deltas"))
    assert len(charts(at)) == 4  # ‖Δe‖ heatmap, the stacked sum, the vectors, value mixing
    assert float(at.metric[0].value) < 1e-4  # Σ head_out + b_O = attn_out
    assert any("burrowing" not in m.value and "mole" in m.value for m in at.markdown)  # the last token by default
    assert len(at.dataframe) == 2  # the logit lens: pushes up, pushes down
    at.selectbox(key="deltas_token").set_value(2)
    ok(at.run())
    assert any("Token 2" in m.value for m in at.markdown)
    at.slider(key="deltas_lens_k").set_value(4)
    ok(at.run())
    assert at.dataframe[0].value.shape[0] == 4
    if model == "minilm-l6":
        assert any("post-norm" in i.value for i in at.info)
        assert any("W_E" in c.value for c in at.caption)


@pytest.mark.parametrize("model", MODELS)
def test_projections_tab(model):
    at = ok(app(model, "projections"))
    assert titles(at)[0].startswith("Queries and keys")
    assert {d["name"] for d in charts(at)[0]["data"]} >= {"queries", "keys"}
    at.radio(key="projections_what").set_value("each token before → after this layer's attention")
    ok(at.run())
    assert "e → e + Δe of all heads" in titles(at)[0]
    at.selectbox(key="projections_who").set_value("head 0")
    ok(at.run())
    assert "head 0" in titles(at)[0]
    at.radio(key="projections_what").set_value("a token's path through the layers")
    at.radio(key="projections_dims").set_value("3D")
    ok(at.run())
    fig = charts(at)[0]
    assert fig["data"][0]["type"] == "scatter3d"
    assert len(fig["data"][0]["hovertext"]) == (7 if model == "minilm-l6" else 31)  # embedding + each block
    at.multiselect(key="projections_path_tokens").select(1)
    ok(at.run())
    assert len(charts(at)[0]["data"]) == 2
    assert at.dataframe[0].value.shape[0] == 3  # the basis: three components


@pytest.mark.parametrize("model", MODELS)
def test_senses_tab_default_and_edited(model):
    at = ok(app(model, "senses"))
    assert not at.warning
    assert at.dataframe[0].value.shape[0] == 5  # the five 'mole' sentences
    assert titles(at)[0].startswith("Cosine similarity, after block")
    before = charts(at)[0]["data"][0]["z"]
    at.text_area(key="senses_text_mole").input(
        "animal | The mole dug under the lawn\n"
        "chemistry | One mole of carbon weighs twelve grams\n"
        "skin | A mole on the skin, next to another mole")
    ok(at.run())
    assert at.dataframe[0].value.shape[0] == 3
    assert charts(at)[0]["data"][0]["z"] != before
    assert any("2 times" in s.label for s in at.selectbox)  # the word appears twice: the user picks which
    if model == "smollm2-135m":
        assert any("causal" in i.value for i in at.info)
        lens = at.dataframe[-1].value.copy()
        at.checkbox(key="senses_mask_off").check()
        ok(at.run())
        assert not at.dataframe[-1].value.equals(lens)


def test_senses_tab_missing_word_and_presets():
    at = ok(app("minilm-l6", "senses"))
    at.text_input(key="senses_word_mole").input("giraffe")
    ok(at.run())
    assert any("not a whole word" in w.value for w in at.warning)
    assert any("At least two sentences" in w.value for w in at.warning)
    at.selectbox(key="senses_preset").set_value("bank")
    ok(at.run())
    assert not at.warning and at.dataframe[0].value.shape[0] == 4
    at.select_slider(key="senses_layer").set_value(0)
    ok(at.run())
    assert titles(at)[0] == "Cosine similarity, embedding"
    at.radio(key="senses_pool").set_value("mean of sub-tokens")
    ok(at.run())


@pytest.mark.parametrize("model", MODELS)
def test_params_tab(model):
    at = ok(app(model, "param_counts"))
    table = at.dataframe[0].value  # the numbers behind the formatted table
    total = int(table.set_index("what").loc["total", "parameters"])
    assert total == {"minilm-l6": 22_565_376, "smollm2-135m": 134_515_008}[model]
    gpt3 = at.dataframe[1].value.set_index("what")["parameters"]
    assert gpt3["one query or key matrix"] == 1_572_864 and gpt3["one head"] == 6_291_456
    assert gpt3["one block of attention"] == 603_979_776 and gpt3["all attention heads"] == 57_982_058_496
    assert any("Key/value sharing" in i.value for i in at.info) == (model == "smollm2-135m")
    at.number_input(key="param_counts_d_model").set_value(768)
    at.number_input(key="param_counts_d_head").set_value(64)
    at.number_input(key="param_counts_n_heads").set_value(12)
    at.number_input(key="param_counts_n_layers").set_value(12)
    ok(at.run())
    mine = at.dataframe[1].value.set_index("what")["parameters"]
    assert mine["all attention heads"] == 12 * 12 * 4 * 768 * 64  # GPT-2 small's attention, counted the same way
    assert "total, as published" not in mine.index
