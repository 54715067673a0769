"""Two contexts side by side: the target's attention row in each, how differently each head treats it, its
similarity across layers, and the patching effects as a clickable map."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from components import content
from components.figures.layout import layer_head_figure, margin
from components.figures.pattern import PATTERN_COLORSCALE
from components.labels import axis_ticks, plotly_escape, position_labels, token_labels

EFFECT_COLORSCALE = "RdBu"  # diverging around 0: blue = towards A (or more likely), red = away
SELECTED_COLOR = "#2ca02c"
ALL_HEADS = -1  # the column of a map that patches every head of a layer at once


def attention_row_figure(row: np.ndarray, tokens: Sequence[str], target: int, *, title: str,
                         zmax: float) -> go.Figure:
    """The target's attention row [n_key] over its own sentence's tokens: one cell per key, colour 0..zmax (give
    both sides the same zmax), the weight written in each cell; the target's own column outlined."""
    z = np.asarray(row, dtype=np.float32)[None, :]  # [1, n_key]
    labels = token_labels(tokens)
    vals, text = axis_ticks(token_labels(tokens, max_chars=12), max_ticks=40)
    heatmap = go.Heatmap(z=z, x=np.arange(len(labels)), y=[0], zmin=0.0, zmax=zmax, colorscale=PATTERN_COLORSCALE,
                         customdata=[position_labels(tokens)], texttemplate="%{z:.2f}" if len(labels) <= 32 else None,
                         colorbar=dict(title=dict(text="weight"), thickness=12),
                         hovertemplate="key %{customdata}<br>weight %{z:.4f}<extra></extra>")
    outline = dict(type="rect", x0=target - 0.5, x1=target + 0.5, y0=-0.5, y1=0.5, line=dict(color="#d62728", width=2))
    return go.Figure(data=[heatmap], layout=dict(
        title=dict(text=plotly_escape(title)), height=210, margin=margin(40),
        xaxis=dict(title=dict(text="key: attended to"), tickvals=vals, ticktext=text, tickangle=-45, showgrid=False),
        yaxis=dict(tickvals=[0], ticktext=[f"{target}: {labels[target]}"], title=dict(text="query"), showgrid=False),
        shapes=[outline],
    ))


def distance_figure(distances: np.ndarray) -> go.Figure:
    """[n_layers, n_heads] cosine distance between A's and B's head_out at the targets (NaN: a head switched off)."""
    return layer_head_figure(distances, title="How differently each head treats the target: 1 − cos(head_out A, "
                             "head_out B)", colorbar="1 − cos", colorscale="Magma",
                             height=max(300, 14 * distances.shape[0] + 140))


def similarity_figure(similarity: np.ndarray) -> go.Figure:
    """[n_layers + 1] cosine of the targets' residual-stream vectors of A and B, at the embedding and after each
    block."""
    steps = content.layer_names(len(similarity) - 1)
    line = go.Scatter(x=steps, y=np.asarray(similarity, dtype=np.float64), mode="lines+markers", name="A · B",
                      line=dict(color="#d62728", width=3), hovertemplate="%{x}: cosine %{y:.3f}<extra></extra>")
    return go.Figure(data=[line], layout=dict(
        title=dict(text="The target's cosine similarity, A vs B, across layers"),
        yaxis=dict(title=dict(text="cosine")), height=380, margin=margin(),
    ))


def effect_map_figure(values: np.ndarray, *, title: str, colorbar: str,
                      selected: tuple[int, int] | None = None) -> go.Figure:
    """Patching effects [n_layers, 1 + n_heads]: column 0 patches every head of the layer at once, column 1 + h
    head h alone; NaN where nothing was swept. Diverging colours around 0. An invisible marker on each swept cell
    carries customdata [layer, head] (head ALL_HEADS for column 0): what a click selects. `selected` is outlined."""
    z = np.asarray(values, dtype=np.float64)  # [n_layers, 1 + n_heads]
    n_layers, n_cols = z.shape
    x = np.arange(n_cols) - 1  # ALL_HEADS, 0, 1, ..., n_heads - 1
    bound = max(float(np.nanmax(np.abs(z), initial=0.0)), 1e-6)
    heatmap = go.Heatmap(z=z, x=x, y=np.arange(n_layers), zmin=-bound, zmax=bound, zmid=0.0,
                         colorscale=EFFECT_COLORSCALE, hoverinfo="skip", colorbar=dict(title=dict(text=colorbar)))
    layers, cols = np.nonzero(np.isfinite(z))
    heads = cols - 1
    text = [f"{cell_name(int(la), int(h))}: {colorbar} {z[la, c]:+.3f}"
            for la, h, c in zip(layers, heads, cols, strict=True)]
    cells = go.Scatter(x=heads, y=layers, mode="markers", showlegend=False, text=text,
                       customdata=np.stack([layers, heads], 1).tolist(),
                       marker=dict(symbol="square", size=14, opacity=0), hovertemplate="%{text}<extra></extra>",
                       selected=dict(marker=dict(opacity=0)), unselected=dict(marker=dict(opacity=0)))
    shapes = [dict(type="line", x0=-0.5, x1=-0.5, y0=-0.5, y1=n_layers - 0.5, line=dict(color="white", width=4))]
    if selected is not None:
        la, h = selected
        shapes.append(dict(type="rect", x0=h - 0.5, x1=h + 0.5, y0=la - 0.5, y1=la + 0.5,
                           line=dict(color=SELECTED_COLOR, width=3)))
    return go.Figure(data=[heatmap, cells], layout=dict(
        title=dict(text=plotly_escape(title)), height=max(300, 16 * n_layers + 140), margin=margin(),
        xaxis=dict(title=dict(text="patched: all heads of the layer | one head"), tickvals=x.tolist(),
                   ticktext=["all"] + [str(h) for h in x[1:]], showgrid=False, zeroline=False),
        yaxis=dict(title=dict(text="layer"), autorange="reversed", showgrid=False, zeroline=False,
                   dtick=1 if n_layers <= 16 else None),
        hovermode="closest", shapes=shapes,
    ))


def cell_name(layer: int, head: int) -> str:
    return f"layer {layer}, all heads" if head == ALL_HEADS else f"head {layer}.{head}"


def point_to_cell(point: Mapping[str, Any]) -> tuple[int, int] | None:
    """(layer, head) of a clicked cell of `effect_map_figure` (head ALL_HEADS: the whole layer), or None."""
    data = point.get("customdata")
    if isinstance(data, list | tuple) and len(data) >= 2:
        return int(data[0]), int(data[1])
    return None


def effect_table(gap: np.ndarray, logprob: np.ndarray | None, by: str, m: int = 8) -> pd.DataFrame:
    """The m swept cells with the largest effect `by` ("gap" or "logprob"): patch, layer, head ("all" or the
    number), and each effect. gap, logprob: [n_layers, 1 + n_heads] as in effect_map_figure."""
    ranked = np.nan_to_num(logprob if by == "logprob" and logprob is not None else gap, nan=-np.inf)
    order = np.argsort(-ranked, axis=None, kind="stable")[: int(np.isfinite(ranked).sum())][:m]
    layers, cols = np.unravel_index(order, gap.shape)
    columns: dict[str, list] = {
        "patch": [cell_name(int(la), int(c) - 1) for la, c in zip(layers, cols, strict=True)],
        "layer": [int(la) for la in layers],
        "head": ["all" if c == 0 else str(int(c) - 1) for c in cols],
        content.EFFECTS["gap"]: [float(gap[la, c]) for la, c in zip(layers, cols, strict=True)],
    }
    if logprob is not None:
        columns[content.EFFECTS["logprob"]] = [float(logprob[la, c]) for la, c in zip(layers, cols, strict=True)]
    return pd.DataFrame(columns)
