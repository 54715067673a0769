"""User flows through the real app.py with Streamlit's AppTest (no browser, no server)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from apptest_tools import app_state, chart_configs, charts, heatmap, open_tab, start, table
from streamlit.testing.v1 import AppTest

from components.labels import plotly_escape

pytestmark = pytest.mark.slow


def pattern_ticks(at: AppTest) -> list[str]:
    layout = charts(at)["pattern_fig"]["layout"]
    return layout["xaxis"]["ticktext"]


def no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_default_page_shows_the_pattern_heatmap():
    at = start()
    no_errors(at)
    figs = charts(at)
    assert "pattern_fig" in figs and "scores_fig" in figs
    z = heatmap(figs["pattern_fig"])
    assert z.shape[0] == z.shape[1] > 3
    assert np.allclose(z.sum(axis=1), 1, atol=1e-4)  # query rows by default
    assert at.query_params["model"] == "smollm2-135m"


def test_a_new_sentence_changes_the_tokens():
    at = start()
    before = pattern_ticks(at)
    at.text_area(key="text").set_value("The mole dug a tunnel under the lawn").run()
    no_errors(at)
    after = pattern_ticks(at)
    assert after != before
    assert any("mole" in t for t in after)


def test_mask_none_fills_the_upper_triangle():
    at = start(layer=2, head=1)
    z = heatmap(charts(at)["pattern_fig"])
    assert np.all(np.triu(z, 1) == 0)
    at.radio(key="mask").set_value("none").run()
    no_errors(at)
    z = heatmap(charts(at)["pattern_fig"])
    assert np.triu(z, 1).sum() > 0.1
    assert np.allclose(z.sum(axis=1), 1, atol=1e-4)


def test_switching_heads_off_changes_the_prediction_panel():
    at = start(text="The capital of France is", layer=0)
    before = charts(at)["pred_fig_pattern_tab"]
    assert not at.dataframe  # no comparison table without an intervention
    open_tab(at, "interventions")
    at.button(key="heads_layer_off").click().run()
    no_errors(at)
    assert app_state(at).heads_off == frozenset((0, h) for h in range(9))
    assert "pred_fig_interventions" in charts(at)
    open_tab(at, "pattern")
    after = charts(at)["pred_fig_pattern_tab"]
    assert after["data"] != before["data"]
    compared = table(at, "pred_table_pattern_tab")
    assert len(compared) >= 10 and compared["Δ pp"].abs().max() > 0.1  # change vs the unmodified run
    paris = compared[compared["token"] == "␣Paris"].iloc[0]
    assert paris["before %"] > paris["probability %"]  # layer 0 off: " Paris" is no longer so sure
    assert "0.0" in at.query_params["off"]


def test_the_url_restores_the_view():
    at = start(text="a fluffy blue creature roamed the verdant forest", layer=5, head=3, mask="none",
               off="5.3,7.0", layout="key_rows")
    no_errors(at)
    s = app_state(at)
    assert (s.layer, s.head, s.mask, s.layout) == (5, 3, "none", "key_rows")
    assert s.heads_off == frozenset({(5, 3), (7, 0)})
    z = heatmap(charts(at)["pattern_fig"])
    assert np.allclose(z.sum(axis=0), 1, atol=1e-4)  # the notes' layout: columns sum to 1
    # the state is written back, so the link reproduces it
    again = start(**{k: at.query_params[k] for k in at.query_params})
    assert np.array_equal(heatmap(charts(again)["pattern_fig"]), z)


def test_html_like_sentence_is_shown_literally():
    text = "<b>bold</b> **x** $x^2$ <img src=x onerror=alert(1)>"
    at = start(text=text)
    no_errors(at)
    ticks = pattern_ticks(at)
    spec = json.dumps(charts(at)["pattern_fig"])
    assert "<b>" not in spec and "<img" not in spec
    joined = "".join(ticks)
    assert joined == plotly_escape(text).replace(" ", "␣")  # every character, entity-escaped, spaces marked


def test_minilm_explains_that_an_encoder_has_no_prediction():
    at = start(model="minilm-l6", text="The mole is a unit in chemistry.")
    no_errors(at)
    assert any("encoder without a language-model head" in i.value for i in at.info)
    z = heatmap(charts(at)["pattern_fig"])
    assert np.triu(z, 1).sum() > 0.1  # bidirectional by default


def test_the_colour_scale_can_follow_the_head():
    at = start(layer=20, head=4)
    fixed = next(t for t in charts(at)["pattern_fig"]["data"] if t["type"] == "heatmap")
    assert fixed["zmax"] == 1.0
    at.toggle(key="pattern_own_scale").set_value(True).run()
    own = next(t for t in charts(at)["pattern_fig"]["data"] if t["type"] == "heatmap")
    assert own["zmax"] == pytest.approx(float(heatmap(charts(at)["pattern_fig"]).max()), rel=1e-5)


def test_the_link_holds_ids_and_older_links_with_labels_still_open():
    at = start(mask="model default", layout="key rows (notes)", tab="All heads")  # a link written before the ids
    no_errors(at)
    s = app_state(at)
    assert (s.mask, s.layout, s.tab) == ("default", "key_rows", "heads")
    assert "head_grid_fig" in charts(at)
    link = at.query_params
    assert (link["mask"], link["layout"], link["tab"]) == ("default", "key_rows", "heads")
    at.radio(key="mask").set_value("none").run()
    assert at.query_params["mask"] == "none" and app_state(at).causal is False


def test_every_figure_downloads_as_png_or_svg_at_a_publication_size():
    at = start()
    for tab in ("pattern", "heads"):
        open_tab(at, tab)
        for key, config in chart_configs(at).items():
            options = config["toImageButtonOptions"]
            assert (options["format"], options["scale"], options["width"]) == ("png", 3, 1000), key
            assert options["filename"] == f"attention-explorer-{key}" and not config["displaylogo"]
    assert "figure" not in at.query_params
    at.radio(key="figure_format").set_value("svg").run()
    no_errors(at)
    assert {c["toImageButtonOptions"]["format"] for c in chart_configs(at).values()} == {"svg"}
    assert at.query_params["figure"] == "svg"
    heights = {key: c["toImageButtonOptions"]["height"] for key, c in chart_configs(at).items()}
    assert heights["head_grid_fig"] == charts(at)["head_grid_fig"]["layout"]["height"]  # the figure's own height
