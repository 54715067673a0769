"""Figure and table builders in components/: the numbers drawn, the text shown, the payload sent.

No Streamlit server and no model: every input is a small numpy array made here.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import re
from dataclasses import dataclass

import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided

from components.figures import heads, predictions, qk
from components.figures import image as _image
from components.figures.layout import MASKED_COLOR, export_config, stacked_axes
from components.figures.pattern import pattern_csv, pattern_figure, scores_figure
from components.labels import (
    axis_ticks,
    markdown_literal,
    plotly_escape,
    position_labels,
    token_labels,
    token_text,
)

NASTY = ["<b>", "<br>", "<script>", "<img src=x onerror=alert(1)>", "$x$", "$x^2$", "**", "&amp;", "%{x}", "a&b"]
INJECTED = ["<b>", "<br>", "<script", "<img", "$x$", "$x^2$", "%{x}"]  # must never appear raw

# plotly.js (src/lib/svg_text_utils.js): TeX is detected on the raw string; tags are split off, then each text
# part is entity-decoded into a plain text node.
PLOTLY_TEX = re.compile(r"([^$]*)([$]+[^$]*[$]+)([^$]*)")
PLOTLY_TAG = re.compile(r"<(\/?)([^ >]*)(\s+(.*))?>", re.I)
PLOTLY_TAGS = {"sup", "sub", "s", "u", "b", "i", "a", "span", "em", "br"}
PLOTLY_ENTITY = re.compile(r"&(#\d+|#x[\da-fA-F]+|[a-z]+);")
PLOTLY_NAMED = {"mu": "μ", "amp": "&", "lt": "<", "gt": ">", "nbsp": "\xa0", "times": "×", "plusmn": "±", "deg": "°"}


def plotly_shows(text: str) -> str:
    """What plotly.js draws for a text field: fails on anything it would typeset or turn into markup."""
    assert not PLOTLY_TEX.match(text) or "$" not in text, f"MathJax would typeset {text!r}"
    for part in re.split(r"(<[^<>]*>)", text):
        tag = PLOTLY_TAG.match(part)
        assert not (tag and tag.group(2).lower() in PLOTLY_TAGS), f"plotly would read {part!r} as markup"

    def decode(m: re.Match) -> str:
        code = m.group(1)
        if code.startswith("#x"):
            return chr(int(code[2:], 16))
        if code.startswith("#"):
            return chr(int(code[1:]))
        return PLOTLY_NAMED.get(code, m.group(0))

    return PLOTLY_ENTITY.sub(decode, text)


def strings(obj) -> list[str]:
    """Every string anywhere in a figure's JSON, except our own hover templates (which use <br>)."""
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for k, v in obj.items() if k != "hovertemplate" for s in strings(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in strings(v)]
    return []


def fig_json(fig) -> dict:
    return json.loads(fig.to_json())


def causal_pattern(n: int, seed: int = 0, sharpness: float = 3.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pattern, scores, masked) of a causal head with random scores, rows summing to 1."""
    rng = np.random.default_rng(seed)
    scores = (rng.standard_normal((n, n)) * sharpness).astype(np.float32)  # [n, n]
    masked = np.triu(np.ones((n, n), bool), 1)  # [n, n]
    logits = np.where(masked, -np.inf, scores)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32), scores, masked


# ---- labels ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("token", NASTY + [" Paris", "Paris ", "  ", "x\ny", "\t", "", "\x00", "a\u202eb"])
def test_token_labels_show_every_token_literally_in_plotly(token):
    (label,) = token_labels([token])
    assert plotly_shows(label) == token_text(token)
    assert "$" not in label and "<" not in label and ">" not in label


def test_token_text_makes_whitespace_and_controls_visible():
    assert token_text(" Paris") == "␣Paris"
    assert token_text("Paris  ") == "Paris␣␣"
    assert token_text("New York") == "New York"
    assert token_text("  ") == "␣␣"
    assert token_text("a\nb") == "a↵b"
    assert token_text("\t") == "⇥"
    assert token_text("\x00") == "\\x00"
    assert token_text("\x1b[0m") == "\\x1b[0m"
    assert token_text("\u202e") == "\\u202e"  # right-to-left override: shown, not obeyed
    assert token_text("\u200b") == "\\u200b"
    assert token_text("") == "∅"
    assert token_text("👨\u200d👩") == "👨\u200d👩"  # the joiner of an emoji sequence stays


def test_plotly_escape_breaks_math_and_tags():
    assert token_labels(["$x^2$"]) == ["&#36;x^2&#36;"]
    assert token_labels(["<b>"]) == ["&lt;b&gt;"]
    assert token_labels(["&amp;"]) == ["&amp;amp;"]
    assert plotly_escape("100%{x}") == "100&#37;{x}"


def test_token_labels_cut_long_tokens_before_escaping():
    (label,) = token_labels(["<" * 30], max_chars=5)
    assert plotly_shows(label) == "<<<<…"


def test_duplicates_keep_distinct_positions():
    tokens = ["the", " cat", " the", "the", "the"]
    assert position_labels(tokens) == ["0: the", "1: ␣cat", "2: ␣the", "3: the", "4: the"]
    vals, text = axis_ticks(token_labels(tokens))
    assert vals == [0, 1, 2, 3, 4] and text == ["the", "␣cat", "␣the", "the", "the"]


def test_axis_ticks_thin_long_inputs():
    labels = [f"t{i}" for i in range(1000)]
    vals, text = axis_ticks(labels, max_ticks=60)
    assert len(vals) <= 60 and vals[0] == 0 and vals[1] - vals[0] == 17
    assert text == [labels[i] for i in vals]


@pytest.mark.parametrize("text", NASTY + ["# title", "1. item", "- item", "> quote", ":smile: :red[x] -> <- -- >=",
                                          "a_b_c", "[x](http://e.com)", "`code`", "\\", "  lead", "`$1 and $2`"])
def test_markdown_literal_renders_as_typed(text):
    markdown_it = pytest.importorskip("markdown_it")
    rendered = markdown_it.MarkdownIt("commonmark").render(markdown_literal(text))
    assert rendered.startswith("<p>") and rendered.count("<") == 2, rendered  # one paragraph, no other markup
    shown = html.unescape(re.sub(r"</?p>", "", rendered)).strip("\n").replace("\u2060", "").replace("\xa0", " ")
    assert shown == text


def test_markdown_literal_defuses_streamlit_extensions():
    out = markdown_literal(":smile: $x$ -> :red[a]")
    assert not re.search(r":[\w-]+:", out.replace("\\", ""))  # emoji shortcodes
    assert "\\$x\\$" in out  # math
    assert "->" not in out.replace("\\", "")  # arrow replacement
    assert not re.search(r":[a-z][a-z0-9-]*\[", out.replace("\\", ""))  # colour directives


# ---- pattern -----------------------------------------------------------------------------------------

def test_pattern_heatmap_is_the_pattern_with_query_rows():
    tokens = ["<b>", " cat", "$x^2$", " cat"]
    pattern, scores, _ = causal_pattern(4)
    fig = pattern_figure(pattern, tokens, scores=scores, title="head 0.1")
    (heat,) = fig.data
    np.testing.assert_array_equal(np.asarray(heat.z), pattern)
    assert fig.layout.yaxis.title.text == "query: attending from"
    assert fig.layout.xaxis.title.text == "key: attending to"
    assert list(fig.layout.xaxis.ticktext) == token_labels(tokens)
    assert list(fig.layout.xaxis.tickvals) == [0, 1, 2, 3]  # the two ' cat' stay apart
    assert tuple(fig.layout.yaxis.range) == (3.5, -0.5)  # row 0 at the top
    assert fig.layout.yaxis.scaleanchor == "x"
    # cell (query 3, key 1): hover names query, key, and carries the raw score
    assert list(heat.customdata[3][1][:2]) == [token_labels(tokens)[3], token_labels(tokens)[1]]
    assert heat.customdata[3][1][2] == pytest.approx(scores[3, 1], abs=1e-4)
    assert "weight %{z:.4f}" in heat.hovertemplate and "query %{y:d}" in heat.hovertemplate


def test_pattern_key_rows_is_the_transpose():
    tokens = ["a", "b", "c"]
    pattern, scores, _ = causal_pattern(3)
    fig = pattern_figure(pattern, tokens, layout="key_rows", scores=scores)
    (heat,) = fig.data
    np.testing.assert_array_equal(np.asarray(heat.z), pattern.T)
    np.testing.assert_allclose(np.asarray(heat.z).sum(axis=0), 1.0, atol=1e-6)  # columns sum to 1
    assert fig.layout.yaxis.title.text == "key: attending to"
    assert fig.layout.xaxis.title.text == "query: attending from"
    # displayed cell (row = key 0, column = query 2) is pattern[2, 0]
    assert list(heat.customdata[0][2][:2]) == ["c", "a"]  # [query, key]
    assert heat.customdata[0][2][2] == pytest.approx(scores[2, 0], abs=1e-4)
    assert "query %{x:d}" in heat.hovertemplate
    with pytest.raises(ValueError):
        pattern_figure(pattern, tokens, layout="columns")


def test_no_token_markup_reaches_any_figure_text():
    tokens = NASTY
    pattern, scores, masked = causal_pattern(len(tokens))
    for fig in (pattern_figure(pattern, tokens, scores=scores), scores_figure(scores, masked, tokens),
                pattern_figure(pattern, tokens, image_threshold=4),
                qk.qk_figures(np.ones(4), np.ones((len(tokens), 4)), tokens, 3)["scores"],
                predictions.prediction_figure([(t, 0.1) for t in tokens])):
        texts = strings(fig_json(fig))
        assert any("␣" in s or "&lt;" in s for s in texts)  # the labels are in there
        for bad in INJECTED:
            assert not any(bad in s for s in texts), bad
        for label in token_labels(tokens):
            assert plotly_shows(label) in [token_text(t) for t in tokens]


def test_image_path_pixels_are_the_quantised_pattern():
    n = 150
    pattern, _, _ = causal_pattern(n, sharpness=2.0)
    tokens = [f" t{i}" for i in range(n)]
    fig = pattern_figure(pattern, tokens, image_threshold=128)
    image, hover = fig.data
    assert image.type == "image" and image.hoverinfo == "skip"
    rgb = _image.decode_png_uri(image.source)  # [n, n, 3]
    assert rgb.shape == (n, n, 3)
    colors = _image.palette("Blues", 255)
    expected = colors[_image.quantize(pattern, 0.0, 1.0, levels=255)]
    np.testing.assert_array_equal(rgb, expected)
    # hover blocks: largest weight per block, names of the block's first and last token
    edges = _image.pool_edges(n, 64)
    assert np.asarray(hover.z).shape == (64, 64)
    assert hover.opacity == 0
    assert float(np.asarray(hover.z)[5, 2]) == pytest.approx(
        pattern[edges[5]:edges[6], edges[2]:edges[3]].max())
    assert hover.customdata[5][2][0] == f"{edges[5]}–{edges[6] - 1}: ␣t{edges[5]} … ␣t{edges[6] - 1}"


def test_image_path_key_rows_transposes_pixels():
    n = 140
    pattern, _, _ = causal_pattern(n)
    image = pattern_figure(pattern, ["x"] * n, layout="key_rows").data[0]
    rgb = _image.decode_png_uri(image.source)
    colors = _image.palette("Blues", 255)
    np.testing.assert_array_equal(rgb, colors[_image.quantize(pattern.T, 0.0, 1.0, levels=255)])


@pytest.mark.parametrize("kind", ["causal", "noise"])
def test_2048_token_pattern_serialises_under_5_mb(kind):
    n = 2048
    if kind == "causal":
        pattern, scores, masked = causal_pattern(n)
    else:  # worst case for PNG compression
        pattern = np.random.default_rng(1).random((n, n), dtype=np.float32)
        scores, masked = pattern * 10 - 5, np.zeros((n, n), bool)
    tokens = [f" tok{i}" for i in range(n)]
    size = len(pattern_figure(pattern, tokens, scores=scores).to_json())
    assert size < 5_000_000, size
    size = len(scores_figure(scores, masked, tokens).to_json())
    assert size < 5_000_000, size


def test_pattern_csv_has_literal_headers_and_values():
    tokens = [" mole", "<b>", "a,b", " mole"]
    pattern, _, _ = causal_pattern(4)
    rows = list(csv.reader(io.StringIO(pattern_csv(pattern, tokens, "query_rows"))))
    assert rows[0] == ["query \\ key", "0: ␣mole", "1: <b>", "2: a,b", "3: ␣mole"]
    assert [r[0] for r in rows[1:]] == rows[0][1:]
    np.testing.assert_allclose(np.array([[float(v) for v in r[1:]] for r in rows[1:]]), pattern, rtol=1e-5)
    rows = list(csv.reader(io.StringIO(pattern_csv(pattern, tokens, "key_rows"))))
    assert rows[0][0] == "key \\ query"
    np.testing.assert_allclose(np.array([[float(v) for v in r[1:]] for r in rows[1:]]), pattern.T, rtol=1e-5)


# ---- scores ------------------------------------------------------------------------------------------

def test_masked_scores_are_off_the_colour_scale():
    tokens = ["a", "b", "c", "d"]
    _, scores, masked = causal_pattern(4)
    fig = scores_figure(scores, masked, tokens)
    grey, main = fig.data
    z = np.asarray(main.z)
    assert np.isnan(z[masked]).all()  # masked cells are gaps in the coloured layer
    np.testing.assert_array_equal(z[~masked], scores[~masked])
    g = np.asarray(grey.z)
    assert (g[masked] == 1).all() and np.isnan(g[~masked]).all()
    assert grey.showscale is False and {c[1] for c in grey.colorscale} == {"rgb(190,190,190)"}
    assert main.zmin == -main.zmax == -np.abs(scores[~masked]).max()  # diverging, centred at 0
    assert "−∞ (masked)" in grey.hovertemplate and "−∞" not in main.hovertemplate
    assert main.hoverongaps is False and grey.hoverongaps is False
    # hover data lives on the layer that draws the cell; the raw score rides along for masked cells
    assert list(main.customdata[0][3]) == ["", ""] and list(grey.customdata[1][1]) == ["", "", ""]
    assert list(grey.customdata[0][3]) == ["a", "d", pytest.approx(scores[0, 3], abs=1e-4)]


def test_masked_scores_key_rows():
    _, scores, masked = causal_pattern(3)
    grey, main = scores_figure(scores, masked, ["a", "b", "c"], layout="key_rows").data
    assert np.isnan(np.asarray(main.z)[masked.T]).all()
    np.testing.assert_array_equal(np.asarray(main.z)[~masked.T], scores.T[~masked.T])


def test_scores_image_path_paints_masked_cells_grey():
    n = 200
    _, scores, masked = causal_pattern(n)
    image = scores_figure(scores, masked, ["t"] * n).data[0]
    rgb = _image.decode_png_uri(image.source)
    assert (rgb[masked] == [190, 190, 190]).all()
    assert not (rgb[~masked] == [190, 190, 190]).all(axis=-1).any()


# ---- head grid ---------------------------------------------------------------------------------------

def test_head_grid_places_each_pooled_pattern():
    n_layers, n_heads, n = 3, 4, 100
    patterns = np.stack([np.stack([causal_pattern(n, seed=10 * la + h)[0] for h in range(n_heads)])
                         for la in range(n_layers)]).astype(np.float16)
    off = np.zeros((n_layers, n_heads), bool)
    off[2, 1] = True
    fig = heads.head_grid_figure(patterns, selected=(1, 3), disabled=off, max_thumb_px=48, gap_px=2)
    image, targets, crosses = fig.data
    rgb = _image.decode_png_uri(image.source)
    assert rgb.shape == (3 * 50 - 2, 4 * 50 - 2, 3)
    pal = heads._palette()
    thumbs = heads.thumbnails(patterns, 48)  # [3, 4, 48, 48]
    assert thumbs.shape == (3, 4, 48, 48)
    # thumbnail (1, 2) = max over blocks of the pattern; its pixels in the image
    edges = _image.pool_edges(n, 48)
    assert thumbs[1, 2, 10, 3] == pytest.approx(patterns[1, 2, edges[10]:edges[11], edges[3]:edges[4]].max())
    block = rgb[50:98, 100:148]
    np.testing.assert_array_equal(block, pal[1 + _image.quantize(thumbs[1, 2], 0.0, 1.0, levels=127)])
    dimmed = rgb[100:148, 50:98]  # head 2.1 is off: its own, faded colours
    np.testing.assert_array_equal(dimmed, pal[128 + _image.quantize(thumbs[2, 1], 0.0, 1.0, levels=127)])
    assert (rgb[48:50, :] == 255).all()  # white gap between layers
    # thumbnail (L, H) is centred on x = H, y = L
    assert image.x0 + (2 * 50 + 23.5) * image.dx == pytest.approx(2)
    # hover / click targets: one per head, named by customdata
    assert len(targets.x) == 12 and targets.customdata[7] == [1, 3] and (targets.x[7], targets.y[7]) == (3, 1)
    assert targets.hovertemplate.startswith("layer %{customdata[0]}, head %{customdata[1]}")
    assert targets.text[9] == " (switched off)"
    assert list(crosses.x) == [1] and list(crosses.y) == [2]
    (rect,) = fig.layout.shapes
    assert (rect.x0, rect.x1, rect.y0, rect.y1) == (2.5, 3.5, 0.5, 1.5)
    assert heads.point_to_head({"customdata": [1, 3], "x": 3, "y": 1}) == (1, 3)
    assert heads.point_to_head({"x": 2.2, "y": 0.9}) == (1, 2)
    assert heads.point_to_head({}) == (None, None)


def test_head_grid_of_smollm2_size_at_2048_tokens_is_small():
    n_layers, n_heads, n = 30, 9, 2048
    rng = np.random.default_rng(0)
    # a different window of one noise array for every head, as a strided view: real bytes, ~10 MB of memory
    base = rng.random((n + n_layers * n_heads, n), dtype=np.float32).astype(np.float16) ** 8
    s0, s1 = base.strides
    patterns = as_strided(base, shape=(n_layers, n_heads, n, n), strides=(n_heads * s0, s0, s0, s1),
                          writeable=False)
    fig = heads.head_grid_figure(patterns, selected=(0, 0), disabled=rng.random((n_layers, n_heads)) < 0.1)
    size = len(fig.to_json())
    assert size < 2_000_000, size
    assert _image.decode_png_uri(fig.data[0].source).shape == (30 * 50 - 2, 9 * 50 - 2, 3)
    # worst case for compression: thumbnails of pure noise, already at 48 px
    noise = rng.random((n_layers, n_heads, 48, 48), dtype=np.float32)
    size = len(heads.head_grid_figure(noise, selected=(0, 0), disabled=noise[..., 0, 0] < 0.5).to_json())
    assert size < 2_000_000, size


def test_max_pool_float16_matches_float32_with_and_without_negatives():
    rng = np.random.default_rng(3)
    edges = _image.pool_edges(100, 48)[:-1]
    for a in (rng.random((2, 100, 100)).astype(np.float16), rng.standard_normal((2, 100, 100)).astype(np.float16)):
        expected = np.maximum.reduceat(np.maximum.reduceat(a.astype(np.float32), edges, -1), edges, -2)
        np.testing.assert_array_equal(_image.max_pool(a, 48), expected)
    assert _image.max_pool(np.ones((5, 5)), 48).shape == (5, 5)  # short inputs are not pooled


def test_head_summary_table_and_stat_figure():
    rng = np.random.default_rng(0)
    stats = {k: rng.random((2, 3)) for k in ("entropy", "first", "previous", "self")}
    df = heads.head_summary_table(stats)
    assert list(df.columns) == ["layer", "head", "entropy (bits)", "first-token share", "previous-token share",
                                "self share"]
    assert len(df) == 6
    row = df[(df["layer"] == 1) & (df["head"] == 2)].iloc[0]
    assert row["entropy (bits)"] == stats["entropy"][1, 2] and row["self share"] == stats["self"][1, 2]
    fig = heads.head_stat_figure(stats["first"], "share on first token", "first")
    np.testing.assert_allclose(np.asarray(fig.data[0].z), stats["first"].astype(np.float32))
    assert fig.layout.yaxis.autorange == "reversed"


# ---- query · key detail ------------------------------------------------------------------------------

def test_qk_products_sum_to_the_bar_heights():
    rng = np.random.default_rng(0)
    d_head, n = 16, 6
    q, keys = rng.standard_normal(d_head), rng.standard_normal((n, d_head))
    masked = np.array([False, False, False, True, True, True])
    tokens = ["<s>", " a", "$x^2$", " a", "b", "c"]
    figs = qk.qk_figures(q, keys, tokens, 2, masked=masked, d_head=d_head)
    assert set(figs) == {"scores", "vectors", "products"}
    shown, hidden = figs["scores"].data  # unmasked keys, masked keys
    heights = np.full(n, np.nan)
    heights[np.asarray(shown.x)], heights[np.asarray(hidden.x)] = shown.y, hidden.y
    products = np.asarray(figs["products"].data[0].z)  # [n, d_head]
    np.testing.assert_allclose(products, keys * q, rtol=1e-6)
    np.testing.assert_allclose(products.sum(axis=1) / math.sqrt(d_head), heights, rtol=1e-5)
    np.testing.assert_allclose(heights, keys @ q / 4, rtol=1e-5)
    parts = np.asarray(figs["products"].data[0].customdata)  # [n, d_head, 2] = (q_i, k_i)
    np.testing.assert_allclose(parts[4, 7], [q[7], keys[4, 7]], rtol=1e-6)
    # the winner is the highest unmasked score; masked bars are grey, hatched, and say −∞
    winner = int(np.argmax(np.where(masked, -np.inf, keys @ q)))
    assert list(shown.x) == [0, 1, 2] and list(hidden.x) == [3, 4, 5]
    assert list(shown.marker.color)[winner] == qk.WINNER_COLOR
    assert hidden.marker.color == qk.MASKED_COLOR and hidden.marker.pattern.shape == "/"
    assert hidden.customdata[1][1].startswith("−∞ (masked")
    assert shown.customdata[winner][1].endswith("highest")
    assert figs["scores"].layout.barmode == "overlay"
    assert "√16 = 4.00" in figs["scores"].layout.title.text and "√16" in figs["products"].layout.title.text
    assert list(figs["scores"].layout.xaxis.ticktext)[3] == "⊘ ␣a"


def test_qk_vectors_are_q_then_every_key():
    rng = np.random.default_rng(1)
    q, keys = rng.standard_normal(8), rng.standard_normal((3, 8))
    fig = qk.qk_figures(q, keys, ["a", "b", "c"], 0)["vectors"]
    q_strip, key_strips = fig.data
    np.testing.assert_allclose(np.asarray(q_strip.z), q[None, :].astype(np.float32))
    np.testing.assert_allclose(np.asarray(key_strips.z), keys.astype(np.float32))
    assert q_strip.zmax == key_strips.zmax == pytest.approx(np.abs(np.concatenate([q, keys.ravel()])).max())
    with pytest.raises(ValueError):
        qk.qk_figures(q, keys, ["a", "b"], 0)


# ---- predictions -------------------------------------------------------------------------------------

def test_prediction_table_without_intervention():
    df = predictions.prediction_table([(" Paris", 0.6), (" London", 0.25), ("<b>", 0.05)])
    assert list(df.columns) == ["rank", "token", "probability %"]
    assert list(df["token"]) == ["␣Paris", "␣London", "<b>"]  # literal in a table: no entities
    np.testing.assert_allclose(df["probability %"], [60, 25, 5])


def test_prediction_deltas_in_percentage_points():
    base = [(" Paris", 0.6, 0.3), (" London", 0.2, 0.5), (" the", 0.1, 0.05)]
    changed = [(" London", 0.5, 0.2), (" Paris", 0.3, 0.6), (" Rome", 0.1, 0.01)]
    df = predictions.prediction_table(base, changed)
    assert list(df["token"]) == ["␣London", "␣Paris", "␣Rome", "␣the"]
    np.testing.assert_allclose(df["probability %"], [50, 30, 10, 5])
    np.testing.assert_allclose(df["before %"], [20, 60, 1, 10])
    np.testing.assert_allclose(df["Δ pp"], [30, -30, 9, -5])
    assert list(df["rank"].astype(object).where(df["rank"].notna(), None)) == [1, 2, 3, None]
    assert list(df["rank before"].astype(object).where(df["rank before"].notna(), None)) == [2, 1, None, 3]
    fig = predictions.prediction_figure(base, changed)
    before, after = fig.data
    assert (before.name, after.name) == ("unmodified", "with intervention")
    np.testing.assert_allclose(np.asarray(before.x), [20, 60, 1, 10])
    np.testing.assert_allclose(np.asarray(after.x), [50, 30, 10, 5])
    assert list(fig.layout.yaxis.ticktext) == token_labels([" London", " Paris", " Rome", " the"])


def test_predictions_accept_engine_rows_matched_by_token_id():
    @dataclass
    class Prediction:
        token_id: int
        token: str
        prob: float
        base_prob: float | None

    # two different ids that read the same must not be merged
    base = [Prediction(1, "x", 0.5, 0.1), Prediction(2, "x", 0.3, 0.4)]
    changed = [Prediction(2, "x", 0.4, 0.3), Prediction(3, "y", 0.2, None)]
    df = predictions.prediction_table(base, changed)
    assert len(df) == 3
    np.testing.assert_allclose(df["Δ pp"][:2], [10, math.nan], equal_nan=True)
    np.testing.assert_allclose(df["Δ pp"][2], -40)
    fig = predictions.prediction_figure(base)
    assert len(fig.data) == 1 and list(np.asarray(fig.data[0].x)) == [50, 30]


# ---- shared layout -----------------------------------------------------------------------------------

@pytest.mark.parametrize("heights, spacing", [((1, 1), 0.08), ((1, 12), 0.04)])
def test_stacked_axes_place_subplots_as_make_subplots_does(heights, spacing):
    from plotly.subplots import make_subplots

    reference = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=list(heights), vertical_spacing=spacing,
                              subplot_titles=("top", "bottom")).layout
    axes = stacked_axes(heights, spacing, titles=("top", "bottom"))
    for name in ("yaxis", "yaxis2"):
        np.testing.assert_allclose(axes[name]["domain"], reference[name].domain, atol=1e-12)
    assert axes["xaxis"]["matches"] == "x2" and axes["yaxis2"]["anchor"] == "x2"
    assert [a["y"] for a in axes["annotations"]] == pytest.approx([a.y for a in reference.annotations])


def test_every_masked_cell_and_bar_has_one_grey():
    _, scores, masked = causal_pattern(4)
    grey = scores_figure(scores, masked, ["a", "b", "c", "d"]).data[0]
    assert {c[1] for c in grey.colorscale} == {MASKED_COLOR}
    bars = qk.qk_figures(np.ones(4), np.ones((4, 4)), ["a", "b", "c", "d"], 1, masked=masked[1])["scores"].data
    assert bars[1].marker.color == MASKED_COLOR


@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_camera_button_saves_at_a_publication_size(fmt):
    fig = heads.head_stat_figure(np.zeros((30, 9)), "t", "c")
    options = export_config(fmt, "attention-explorer-x", fig.layout.height)["toImageButtonOptions"]
    assert options["format"] == fmt and options["filename"] == "attention-explorer-x"
    assert options["width"] * options["scale"] >= (3000 if fmt == "png" else 1000)  # 300 dpi at 10 inches
    assert options["height"] == fig.layout.height == 540
    assert export_config(fmt, "p", None)["toImageButtonOptions"]["height"] == 700  # a figure sized by the page
    with pytest.raises(ValueError):
        export_config("jpeg", "x", None)
