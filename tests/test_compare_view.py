"""The Compare view through the real app.py (AppTest) on both embedded models: the mole presets, other presets,
edited texts, a target word that does not occur, the patching sweeps, and a click-through to a patched run that
the other tabs show and the link reproduces. Every number on the page is computed here again from the engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from apptest_tools import app_state, charts, decode, heatmap, ok, open_tab, start, table
from streamlit.testing.v1 import AppTest

import engine
from components import content, state
from components.labels import markdown_literal, token_text
from engine.analysis import compare, senses

pytestmark = pytest.mark.slow
MODELS = ["minilm-l6", "smollm2-135m"]
PRESET = content.COMPARE_PRESETS["mole_chemistry"]
ANIMAL, CHEMISTRY = PRESET["a"][1], PRESET["b"][1]
LAYER, HEAD = 1, 2


def target(model: engine.Model, text: str, word: str = "mole", occurrence: int = -1) -> int:
    return senses.find_word(model, text, word)[occurrence][-1]


def cos(x: torch.Tensor, y: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(x.double(), y.double(), dim=-1))


def gap_closed(model: engine.Model, a: engine.Trace, ta: int, text_b: str, tb: int, heads) -> tuple[float, float]:
    """(gap closed, Δ log p of A's top token) of one patch, from two plain runs of B with and without it."""
    last = model.config.n_layers - 1
    b = model.run(text_b)
    patched = model.run(text_b, patch={(la, h): {tb: a["z", la][h, ta]} for la, h in heads})
    reference = a["resid_post", last][ta]
    base = cos(b["resid_post", last][tb], reference)
    gap = (cos(patched["resid_post", last][tb], reference) - base) / (1 - base)
    if b.logits is None:
        return gap, float("nan")
    token = int(a.logits_at(ta).argmax())
    logp = [float(torch.log_softmax(t.logits_at(tb).double(), -1)[token]) for t in (patched, b)]
    return gap, logp[0] - logp[1]


def effect_map(at: AppTest) -> np.ndarray:
    """[n_layers, 1 + n_heads] of the effect map: column 0 all heads of a layer, NaN where nothing was swept."""
    return heatmap(charts(at)["compare_map"])


@pytest.mark.parametrize("model", MODELS)
def test_mole_presets_side_by_side(model, models):
    m = models[model]
    at = ok(start(model=model, tab="compare", layer=LAYER, head=HEAD))
    assert not at.warning
    a, b = m.run(ANIMAL), m.run(CHEMISTRY)
    ta, tb = target(m, ANIMAL), target(m, CHEMISTRY)
    targets = table(at, "compare_targets")
    assert list(targets["sentence"]) == [ANIMAL, CHEMISTRY] and list(targets["target position"]) == [ta, tb]

    # the target's attention row in A and in B, one colour scale
    rows = [a["pattern", LAYER][HEAD, ta].numpy(), b["pattern", LAYER][HEAD, tb].numpy()]
    figures = [charts(at)["compare_row_a"], charts(at)["compare_row_b"]]
    for fig, row in zip(figures, rows, strict=True):
        np.testing.assert_allclose(heatmap(fig)[0], row, atol=1e-6)
        assert fig["data"][0]["zmax"] == pytest.approx(max(rows[0].max(), rows[1].max()), abs=1e-6)

    # per head: 1 − cos of head_out at the targets, and the top heads
    n_layers, n_heads = m.config.n_layers, m.config.n_heads
    distance = np.array([[1 - cos(a["head_out", la][h, ta], b["head_out", la][h, tb]) for h in range(n_heads)]
                         for la in range(n_layers)])
    np.testing.assert_allclose(heatmap(charts(at)["compare_distances"]), distance, atol=1e-5)
    top = table(at, "compare_top_heads")
    order = np.argsort(-distance, axis=None)[:5]
    assert list(zip(top["layer"], top["head"], strict=True)) == [divmod(int(i), n_heads) for i in order]
    np.testing.assert_allclose(top["1 − cos"], distance.ravel()[order], atol=1e-5)

    # similarity across layers: the Word senses computation for these two sentences
    vectors = np.stack([senses.word_vectors(a, [ta]), senses.word_vectors(b, [tb])])
    similarity = senses.similarity_by_layer(vectors)[:, 0, 1]
    np.testing.assert_allclose(decode(charts(at)["compare_similarity"]["data"][0]["y"]), similarity, atol=1e-6)
    assert any(f"{similarity[-1]:.3f} after the last block" in c.value for c in at.caption)

    # the sweeps: the layer sweep and the heads of the layer that closes most of the gap
    layers = compare.sweep_layers(a, ta, b, tb)
    best = int(np.nanargmax(layers.gap_closed))
    heads = compare.sweep_heads(a, ta, b, tb, best)
    grid = effect_map(at)
    np.testing.assert_allclose(grid[:, 0], layers.gap_closed, atol=1e-6)
    np.testing.assert_allclose(grid[best, 1:], heads.gap_closed, atol=1e-6)
    assert np.isnan(np.delete(grid[:, 1:], best, axis=0)).all()
    assert at.selectbox(key="compare_layer").value == best
    assert any(f"= {layers.base_cos:.3f}" in c.value.replace("\\", "") for c in at.caption)

    # the top patch of the table, from plain runs of B with and without it
    cells = table(at, "compare_top_cells")
    first = cells.iloc[0]
    top_layer = int(first["layer"])
    heads_of = [(top_layer, int(first["head"]))] if first["head"] != "all" else [(top_layer, h) for h in range(n_heads)]
    gap, change = gap_closed(m, a, ta, CHEMISTRY, tb, heads_of)
    assert first["gap closed"] == pytest.approx(gap, abs=1e-4)
    assert first["gap closed"] == pytest.approx(np.nanmax(grid), abs=1e-6)
    if m.config.causal:
        assert first["Δ log p"] == pytest.approx(change, abs=1e-3)
        at.radio(key="compare_effect").set_value("logprob")
        ok(at.run())
        grid = effect_map(at)
        np.testing.assert_allclose(grid[:, 0], layers.logprob_change, atol=1e-5)
        assert at.query_params["compare.effect"] == "logprob"
    else:
        assert "Δ log p" not in cells.columns
        assert any(markdown_literal("without a language-model head") in i.value for i in at.info)
        assert not at.get("radio") or all(r.key != "compare_effect" for r in at.radio)

    # every head of every layer, on request
    at.toggle(key="compare_all").set_value(True)
    ok(at.run())
    every = compare.sweep_all_heads(a, ta, b, tb)
    shown = every.logprob_change if m.config.causal else every.gap_closed
    np.testing.assert_allclose(effect_map(at)[:, 1:], shown, atol=1e-5)
    assert at.query_params["compare.all"] == "1"


def test_presets_and_edited_texts_keep_their_targets_in_the_link(minilm):
    at = ok(start(model="minilm-l6", tab="compare", layer=LAYER, head=HEAD))
    assert "compare_pattern_a" not in charts(at)
    at.toggle(key="compare_full").set_value(True)  # both full patterns, on demand
    ok(at.run())
    for key, text in (("compare_pattern_a", ANIMAL), ("compare_pattern_b", CHEMISTRY)):
        np.testing.assert_allclose(heatmap(charts(at)[key]), minilm.run(text)["pattern", LAYER][HEAD].numpy(),
                                   atol=1e-6)
    at.selectbox(key="compare_preset").set_value("bank")
    ok(at.run())
    bank = content.COMPARE_PRESETS["bank"]
    assert list(table(at, "compare_targets")["sentence"]) == [bank["a"][1], bank["b"][1]]
    assert at.text_input(key="compare_word_a_bank").value == "bank"
    at.selectbox(key="compare_preset").set_value("mole_skin")
    ok(at.run())
    skin = content.COMPARE_PRESETS["mole_skin"]["b"][1]
    assert list(table(at, "compare_targets")["sentence"]) == [ANIMAL, skin]

    # edited texts: "mole" twice in A, the first occurrence chosen; a different word in B
    text_a = "A mole dug under the lawn while another mole slept"
    text_b = "Weigh one mole of carbon"
    at.text_area(key="compare_a_mole_skin").input(text_a)
    at.text_area(key="compare_b_mole_skin").input(text_b)
    ok(at.run())
    assert list(table(at, "compare_targets")["target position"]) == [target(minilm, text_a), target(minilm, text_b)]
    at.selectbox(key="compare_occ_A").set_value(0)
    at.text_area(key="compare_b_mole_skin").input("Weigh one gram of carbon")
    at.text_input(key="compare_word_b_mole_skin").input("gram")
    ok(at.run())
    expected = [target(minilm, text_a, occurrence=0), target(minilm, "Weigh one gram of carbon", "gram")]
    assert list(table(at, "compare_targets")["target position"]) == expected
    link = {k: at.query_params[k] for k in at.query_params}
    assert (link["compare.preset"], link["compare.a"], link["compare.occ_a"], link["compare.word_b"]) == (
        "mole_skin", text_a, "0", "gram")

    # the link reproduces the comparison, also after a visit to another tab
    open_tab(at, "pattern")
    open_tab(at, "compare")
    assert list(table(at, "compare_targets")["target position"]) == expected
    again = ok(start(**link))
    assert list(table(again, "compare_targets")["target position"]) == expected
    assert list(table(again, "compare_targets")["sentence"]) == [text_a, "Weigh one gram of carbon"]


def test_a_word_that_does_not_occur_keeps_the_previous_view(minilm):
    at = ok(start(model="minilm-l6", tab="compare"))
    before = table(at, "compare_targets")
    before_map = effect_map(at)
    at.text_input(key="compare_word_a_mole_chemistry").input("xyz")
    ok(at.run())
    (warning,) = at.warning
    assert warning.value == markdown_literal("“xyz” is not a whole word of text A (whole words, any case), so it has "
                                             "no target.") + " Showing the last comparison that worked."
    assert table(at, "compare_targets").equals(before)  # the previous comparison stays on the page
    np.testing.assert_array_equal(effect_map(at), before_map)
    assert at.query_params["compare.word_a"] == "xyz"  # what the visitor typed is kept
    at.text_input(key="compare_word_a_mole_chemistry").input("MOLE")  # any case
    at.text_area(key="compare_b_mole_chemistry").input("   ")
    ok(at.run())
    assert [w.value for w in at.warning] == [markdown_literal("Text B is empty: type a sentence with the target "
                                                              "word.") + " Showing the last comparison that worked."]
    assert table(at, "compare_targets").equals(before)
    at.text_area(key="compare_b_mole_chemistry").input(CHEMISTRY)
    ok(at.run())
    assert not at.warning and table(at, "compare_targets").equals(before)


def check_predictions(at: AppTest, model: engine.Model, patched: engine.Trace, b: engine.Trace) -> None:
    """The prediction table of the pattern tab: the patched run's top 10 after the last token, beside B's own."""
    shown = table(at, "pred_table_pattern_tab")
    ranked = shown[shown["rank"].notna()]
    after = torch.softmax(patched.logits_at(-1).double(), -1)
    before = torch.softmax(b.logits_at(-1).double(), -1)
    top = after.topk(len(ranked))
    assert list(ranked["token"]) == [token_text(t) for t in model.readable(top.indices.tolist())]
    np.testing.assert_allclose(ranked["probability %"], 100 * top.values.numpy(), atol=1e-3)
    np.testing.assert_allclose(ranked["before %"], 100 * before[top.indices].numpy(), atol=1e-3)


def test_a_clicked_patch_becomes_the_apps_run_and_its_link(smollm):
    last = smollm.config.n_layers - 1
    at = ok(start(tab="compare", layer=last, head=HEAD))
    a, b = smollm.run(ANIMAL), smollm.run(CHEMISTRY)
    ta, tb = target(smollm, ANIMAL), target(smollm, CHEMISTRY)
    choice = at.selectbox(key="compare_cell")
    strongest = next(c for c in choice.options if c.startswith("head "))  # options are ordered by effect
    layer, h = (int(x) for x in strongest.split(":")[0].removeprefix("head ").split("."))
    choice.set_value((layer, h))
    at.button(key="compare_apply").click()
    ok(at.run())

    s = app_state(at)
    assert s.text == CHEMISTRY and s.patch == state.Patch(ANIMAL, ta, tb, ((layer, h),))
    assert (s.mask, s.heads_off, s.position) == ("default", frozenset(), -1)
    link = {k: at.query_params[k] for k in at.query_params}
    assert (link["patch"], link["patch_at"], link["patch_from"], link["patch_from_at"]) == (
        f"{layer}.{h}", str(tb), ANIMAL, str(ta))
    assert link["text"] == CHEMISTRY
    assert any(markdown_literal(f"head {layer}.{h} patched") in c.value for c in at.caption)
    assert any(markdown_literal(f"head {layer}.{h} patched from A") in x.value for x in at.success)

    # the pattern tab shows the patched run: the pattern of a later layer and the predictions after B's target
    patched = smollm.run(CHEMISTRY, patch={(layer, h): {tb: a["z", layer][h, ta]}})
    assert not np.allclose(patched["pattern", last][HEAD].numpy(), b["pattern", last][HEAD].numpy(), atol=1e-4)
    open_tab(at, "pattern")
    np.testing.assert_allclose(heatmap(charts(at)["pattern_fig"]), patched["pattern", last][HEAD].numpy(), atol=1e-6)
    check_predictions(at, smollm, patched, b)

    # the link alone reproduces the patched run
    link = {k: at.query_params[k] for k in at.query_params}
    assert link["tab"] == "pattern" and link["patch"] == f"{layer}.{h}"
    again = ok(start(**link))
    assert app_state(again).patch == s.patch
    check_predictions(again, smollm, patched, b)
    assert any(markdown_literal(f"head {layer}.{h} patched") in c.value for c in again.caption)

    # the way back
    again.button(key="clear_patch").click()
    ok(again.run())
    assert app_state(again).patch is None and "patch" not in again.query_params
    with pytest.raises(KeyError):
        again.get_by_key("pred_table_pattern_tab")  # no intervention: no comparison table
    np.testing.assert_allclose(heatmap(charts(again)["pattern_fig"]), b["pattern", last][HEAD].numpy(), atol=1e-6)


def test_a_patch_that_does_not_fit_the_run_is_named_and_left_out(minilm):
    text = "a short text"
    plain = minilm.run(text)["pattern", 0][0].numpy()
    at = ok(start(model="minilm-l6", text=text, patch="20.1", patch_at="1", patch_from="the mole", patch_from_at="2"))
    assert [w.value for w in at.warning] == [markdown_literal(
        "The patch names head(s) 20.1, which minilm-l6 does not have: the run is shown without the patch.")]
    np.testing.assert_allclose(heatmap(charts(at)["pattern_fig"]), plain, atol=1e-6)
    at = ok(start(model="minilm-l6", text=text, patch="1.1", patch_at="50", patch_from="the mole", patch_from_at="2"))
    assert "do not both exist" in at.warning[0].value
    np.testing.assert_allclose(heatmap(charts(at)["pattern_fig"]), plain, atol=1e-6)
    assert at.query_params["patch_at"] == "50"  # kept until the visitor clears it
    at.button(key="clear_patch").click()
    ok(at.run())
    assert not at.warning and "patch" not in at.query_params and app_state(at).patch is None


def test_identical_contexts_leave_no_gap_to_close():
    at = ok(start(model="minilm-l6", tab="compare", **{"compare.b": ANIMAL}))
    assert any("already point the same way" in i.value for i in at.info)
    assert "compare_map" not in charts(at) and "compare_similarity" in charts(at)
