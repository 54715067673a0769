"""The Compare view's pure figure builders and the patch's wording: data in, figure (or text) out; no model."""

from __future__ import annotations

import numpy as np
from apptest_tools import decode

from components.figures import compare as figures
from components.patching import heads_text

XSS = "<img src=x onerror=alert(1)>"


def test_attention_row_shows_the_row_on_the_given_scale_with_literal_tokens():
    row = np.array([0.5, 0.25, 0.25, 0.0])
    fig = figures.attention_row_figure(row, ["The", XSS, " $x$", " mole"], 2, title="A", zmax=0.8).to_plotly_json()
    heat = fig["data"][0]
    np.testing.assert_allclose(decode(heat["z"]), row[None, :])
    assert (heat["zmin"], heat["zmax"]) == (0.0, 0.8)
    assert heat["customdata"][0][1] == "1: &lt;img src=x onerror=alert(1)&gt;"
    assert heat["customdata"][0][2] == "2: ␣&#36;x&#36;"
    assert fig["layout"]["yaxis"]["ticktext"] == ["2: ␣&#36;x&#36;"]
    (outline,) = fig["layout"]["shapes"]
    assert (outline["x0"], outline["x1"]) == (1.5, 2.5)


def test_effect_map_marks_every_swept_cell_for_a_click():
    values = np.full((3, 4), np.nan)  # 3 layers, 3 heads: column 0 = all heads of the layer
    values[:, 0] = [0.1, -0.2, 0.5]
    values[1, 1:] = [0.3, 0.0, -0.1]
    fig = figures.effect_map_figure(values, title="gap <b>closed</b>", colorbar="gap closed",
                                    selected=(1, 2)).to_plotly_json()
    heat, cells = fig["data"]
    np.testing.assert_array_equal(decode(heat["z"]), values)
    assert heat["zmid"] == 0 and heat["zmax"] == -heat["zmin"] == 0.5
    points = [{"customdata": c} for c in cells["customdata"]]
    assert [figures.point_to_cell(p) for p in points] == [(0, -1), (1, -1), (1, 0), (1, 1), (1, 2), (2, -1)]
    assert cells["text"][0] == "layer 0, all heads: gap closed +0.100"
    assert cells["text"][2] == "head 1.0: gap closed +0.300"
    assert fig["layout"]["title"]["text"] == "gap &lt;b&gt;closed&lt;/b&gt;"
    assert fig["layout"]["shapes"][-1]["x0"] == 1.5 and fig["layout"]["shapes"][-1]["y0"] == 0.5
    assert figures.point_to_cell({"x": 1, "y": 2}) is None


def test_effect_table_ranks_the_swept_cells_by_the_effect_shown():
    gap = np.array([[0.2, np.nan, np.nan], [0.1, 0.4, -0.3]])
    logprob = np.array([[1.0, np.nan, np.nan], [-2.0, 0.5, 3.0]])
    by_gap = figures.effect_table(gap, logprob, "gap")
    assert list(by_gap["patch"]) == ["head 1.0", "layer 0, all heads", "layer 1, all heads", "head 1.1"]
    assert list(by_gap["head"]) == ["0", "all", "all", "1"] and list(by_gap["layer"]) == [1, 0, 1, 1]
    assert list(by_gap["Δ log p"]) == [0.5, 1.0, -2.0, 3.0]
    assert list(figures.effect_table(gap, logprob, "logprob", m=2)["patch"]) == ["head 1.1", "layer 0, all heads"]
    assert list(figures.effect_table(gap, None, "logprob").columns) == ["patch", "layer", "head", "gap closed"]


def test_a_patch_names_its_heads():
    assert heads_text(tuple((3, h) for h in range(9)), 9) == "all 9 heads of layer 3"
    assert heads_text(((3, 1),), 9) == "head 3.1"
    assert heads_text(((3, 0), (4, 1)), 9) == "heads 3.0, 4.1"
