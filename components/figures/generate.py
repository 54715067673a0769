"""Figures of a generation: one step's attention row, every head's row for that query, the predictions at a step
with the chosen token marked, the full pattern with the written part marked, and two continuations compared."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from components.figures import image as _image
from components.figures.layout import margin
from components.figures.matrix import Layout
from components.figures.pattern import PATTERN_COLORSCALE, pattern_figure
from components.figures.predictions import BASE_COLOR, CHANGED_COLOR
from components.labels import axis_ticks, token_labels

PROMPT_COLOR, WRITTEN_COLOR = BASE_COLOR, CHANGED_COLOR  # prompt tokens and written tokens, in every figure
QUERY_COLOR = "#d62728"  # the query of the chosen step; the first step where two continuations part
SAME_COLOR, PARTED_COLOR = "rgb(235,235,235)", "rgb(253,208,162)"
OFF_COLOR = "rgb(90,90,90)"
LEVELS = 255  # palette of the all-heads image: 0 = gap, 1..255 = weight 0..1


def _part(positions: np.ndarray, n_prompt: int) -> list[str]:
    return np.where(positions < n_prompt, "prompt", "written").tolist()


def attention_row_figure(weights: np.ndarray, tokens: Sequence[str], n_prompt: int) -> go.Figure:
    """Bars of one query's attention over keys 0..q, weights [q + 1] (the query is the last key): prompt keys in
    one colour, written keys in another."""
    weights = np.asarray(weights, dtype=np.float32)  # [q + 1]
    if weights.shape != (len(tokens),):
        raise ValueError(f"weights has shape {weights.shape}, expected [{len(tokens)}] (one per key)")
    positions = np.arange(len(tokens))
    labels = token_labels(tokens)
    vals, text = axis_ticks(token_labels(tokens, max_chars=12), max_ticks=40)
    bar = go.Bar(x=positions, y=weights, marker=dict(color=np.where(positions < n_prompt, PROMPT_COLOR,
                                                                      WRITTEN_COLOR).tolist()),
                 customdata=np.stack([labels, _part(positions, n_prompt)], axis=1),
                 hovertemplate="key %{x}: %{customdata[0]} (%{customdata[1]})<br>weight %{y:.4f}<extra></extra>")
    return go.Figure(data=[bar], layout=dict(
        xaxis=dict(title=dict(text="key: attended to (blue: prompt, orange: written)"), tickvals=vals, ticktext=text,
                   range=[-0.5, len(tokens) - 0.5], automargin=True),
        yaxis=dict(title=dict(text="attention weight"), range=[0, 1], automargin=True),
        height=320, margin=margin(20), bargap=0.1,
    ))


def step_prediction_figure(top: Sequence[tuple[int, str, float]], chosen: tuple[int, str, float]) -> go.Figure:
    """Horizontal bars of the most likely next tokens (id, token, probability), most likely at the top; the chosen
    token marked (added below the others when sampling chose one outside them)."""
    rows = list(top) + ([chosen] if chosen[0] not in {r[0] for r in top} else [])
    labels = token_labels([r[1] for r in rows])
    is_chosen = [r[0] == chosen[0] for r in rows]
    positions = np.arange(len(rows))
    bar = go.Bar(y=positions, x=[100 * r[2] for r in rows], orientation="h",
                 marker=dict(color=[WRITTEN_COLOR if c else PROMPT_COLOR for c in is_chosen]),
                 customdata=[[label, " (chosen)" if c else ""] for label, c in zip(labels, is_chosen, strict=True)],
                 hovertemplate="%{customdata[0]}%{customdata[1]}<br>probability %{x:.2f}%<extra></extra>")
    return go.Figure(data=[bar], layout=dict(
        yaxis=dict(tickvals=positions, ticktext=[f"{label} ◀" if c else label for label, c in
                                                 zip(labels, is_chosen, strict=True)],
                   autorange="reversed", title=dict(text="next token (◀ chosen)"), automargin=True),
        xaxis=dict(title=dict(text="probability (%)"), rangemode="tozero", automargin=True),
        height=max(30 * len(rows) + 100, 250), margin=margin(20),
    ))


def heads_row_figure(rows: np.ndarray, tokens: Sequence[str], *, selected: tuple[int, int] | None = None,
                     disabled: np.ndarray | None = None, max_px: int = 64, strip_px: int = 10,
                     gap_px: int = 3) -> go.Figure:
    """One image of every head's attention row for one query, rows [n_layers, n_heads, n_keys]: a strip per head
    (layers down, heads across), keys from the first token (left) to the query (right), colour = weight 0..1,
    max-pooled to at most max_px pixels. Hover names the head and its strongest key; selected is outlined,
    disabled (bool [n_layers, n_heads], True = off) crossed out."""
    rows = np.asarray(rows, dtype=np.float32)  # [n_layers, n_heads, n_keys]
    n_layers, n_heads, n_keys = rows.shape
    if n_keys != len(tokens):
        raise ValueError(f"rows have {n_keys} keys but {len(tokens)} tokens were given")
    edges = _image.pool_edges(n_keys, max_px)
    pooled = np.maximum.reduceat(rows, edges[:-1], axis=-1)  # [n_layers, n_heads, w]
    width = pooled.shape[-1]
    tiles = np.zeros((n_layers, strip_px + gap_px, n_heads, width + gap_px), np.uint8)  # palette 0 = gap
    tiles[:, :strip_px, :, :width] = _image.quantize(pooled, 0.0, 1.0, levels=LEVELS, offset=1)[:, None]
    canvas = tiles.reshape(n_layers * (strip_px + gap_px), n_heads * (width + gap_px))[:-gap_px, :-gap_px]
    colors = np.concatenate([np.array([[255, 255, 255]], np.uint8), _image.palette(PATTERN_COLORSCALE, LEVELS)])
    dx, dy = 1 / (width + gap_px), 1 / (strip_px + gap_px)  # a strip's centre lands on (x=head, y=layer)
    picture = go.Image(source=_image.png_data_uri(canvas, colors), x0=-(width - 1) * dx / 2,
                       y0=-(strip_px - 1) * dy / 2, dx=dx, dy=dy, hoverinfo="skip")
    strongest = rows.argmax(axis=-1)  # [n_layers, n_heads]
    labels = np.array([f"{k}: {label}" for k, label in enumerate(token_labels(tokens))], dtype=object)
    hover = go.Heatmap(z=rows.max(axis=-1), x=np.arange(n_heads), y=np.arange(n_layers), opacity=0,
                       customdata=np.stack([labels[strongest], np.round(rows.max(axis=-1), 4)], axis=-1),
                       colorscale=PATTERN_COLORSCALE, zmin=0.0, zmax=1.0, colorbar=dict(title=dict(text="weight")),
                       hovertemplate="layer %{y}, head %{x}<br>strongest key %{customdata[0]}: "
                                     "%{customdata[1]}<extra></extra>")
    off = np.argwhere(np.zeros((n_layers, n_heads), bool) if disabled is None else np.asarray(disabled, bool))
    crosses = go.Scatter(x=off[:, 1], y=off[:, 0], mode="markers", showlegend=False, hoverinfo="skip",
                         marker=dict(symbol="x-thin", size=12, line=dict(width=2, color=OFF_COLOR)))
    shapes = []
    if selected is not None:
        layer, head = selected
        shapes.append(dict(type="rect", x0=head - 0.5, x1=head + 0.5, y0=layer - 0.5, y1=layer + 0.5,
                           line=dict(color=QUERY_COLOR, width=2)))
    return go.Figure(data=[picture, hover, crosses], layout=dict(
        xaxis=dict(title=dict(text="head"), tickvals=list(range(n_heads)), range=[-0.5, n_heads - 0.5],
                   showgrid=False, zeroline=False, side="top"),
        yaxis=dict(title=dict(text="layer"), tickvals=list(range(n_layers)), range=[n_layers - 0.5, -0.5],
                   showgrid=False, zeroline=False, scaleanchor=False),  # strips, not square pixels
        height=min(max(16 * n_layers + 100, 260), 900), plot_bgcolor="white", shapes=shapes, margin=margin(40),
    ))


def marked_pattern_figure(pattern: np.ndarray, tokens: Sequence[str], n_prompt: int, query: int, *,
                          layout: Layout = "query_rows") -> go.Figure:
    """The pattern figure [n, n] of prompt + written tokens, the written part marked on both axes (dashed lines
    where it begins, "prompt" and "written" above) and the query of the chosen step outlined."""
    n = len(tokens)
    fig = pattern_figure(pattern, tokens, layout=layout)
    edge, end = n_prompt - 0.5, n - 0.5
    line = dict(color=WRITTEN_COLOR, width=2, dash="dash")
    row = dict(x0=-0.5, x1=query + 0.5, y0=query - 0.5, y1=query + 0.5)
    if layout == "key_rows":
        row = dict(x0=row["y0"], x1=row["y1"], y0=row["x0"], y1=row["x1"])
    shapes = [dict(type="line", x0=edge, x1=edge, y0=-0.5, y1=end, line=line),
              dict(type="line", x0=-0.5, x1=end, y0=edge, y1=edge, line=line),
              dict(type="rect", **row, line=dict(color=QUERY_COLOR, width=2))]
    labels = [dict(text=text, x=x, xref="x", y=1.0, yref="paper", yanchor="bottom", showarrow=False,
                   font=dict(color=color)) for text, x, color in
              (("prompt", (n_prompt - 1) / 2, "rgb(49,130,189)"), ("written", (n_prompt + n - 1) / 2, WRITTEN_COLOR))
              if text == "prompt" or n > n_prompt]
    fig.update_layout(shapes=shapes, annotations=labels)  # one update: the builder's figure plus its marks
    return fig


def continuations_figure(base: Sequence[Any], changed: Sequence[Any], parting: int | None,
                         window: int = 20) -> go.Figure:
    """Two continuations token by token (engine Steps: .token_id, .token), step 1 on the left: the unmodified one
    above, the one with heads off below; steps where they differ shaded, the first (parting, 1-based) outlined.
    Shows `window` steps from a little before it; drag to pan along."""
    n = max(len(base), len(changed))
    z = np.full((2, n), np.nan, dtype=np.float32)  # [run, step]: 0 same, 1 differs, NaN not written
    text, full = np.full((2, n), "", dtype=object), np.full((2, n), "", dtype=object)
    for r, (steps, other) in enumerate(((base, changed), (changed, base))):
        z[r, : len(steps)] = [float(i >= len(other) or s.token_id != other[i].token_id) for i, s in enumerate(steps)]
        text[r, : len(steps)] = token_labels([s.token for s in steps], max_chars=8)
        full[r, : len(steps)] = token_labels([s.token for s in steps])
    cells = go.Heatmap(z=z, x=np.arange(1, n + 1), y=[0, 1], text=text, texttemplate="%{text}", customdata=full,
                       textfont=dict(size=13), zmin=0, zmax=1, colorscale=[[0, SAME_COLOR], [1, PARTED_COLOR]],
                       showscale=False, hoverongaps=False, xgap=2, ygap=2,
                       hovertemplate="step %{x}: %{customdata}<extra></extra>")
    start = 1 if parting is None else max(1, parting - window // 4)
    shapes = [] if parting is None else [dict(type="rect", x0=parting - 0.5, x1=parting + 0.5, y0=-0.5, y1=1.5,
                                              line=dict(color=QUERY_COLOR, width=3))]
    return go.Figure(data=[cells], layout=dict(
        xaxis=dict(title=dict(text="step"), range=[start - 0.5, min(start + window, n + 1) - 0.5], showgrid=False,
                   zeroline=False),
        yaxis=dict(tickvals=[0, 1], ticktext=["unmodified", "heads off"], range=[1.5, -0.5], showgrid=False,
                   zeroline=False, fixedrange=True),
        shapes=shapes, dragmode="pan", height=170, plot_bgcolor="white", margin=margin(20),
    ))
