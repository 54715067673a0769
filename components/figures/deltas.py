"""Δe figures: how far each head moves each token, how the heads add up to the attention output, and which
value vectors a query mixes in; the logit lens as tables."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from components.figures.layout import margin, stacked_axes
from components.labels import axis_ticks, position_labels, token_labels, token_text
from engine.analysis.deltas import DeltaSum, ValueFactoring
from engine.analysis.lens import LensReading


def delta_norm_figure(norms: np.ndarray, tokens: Sequence[str], layer: int, token: int | None = None) -> go.Figure:
    """Heatmap heads × tokens of ‖Δe‖ [n_heads, n]."""
    n_heads, n = norms.shape
    hover = np.array([[[p] for p in position_labels(tokens)]] * n_heads, dtype=object)  # [n_heads, n, 1]
    heatmap = go.Heatmap(z=norms, customdata=hover, colorscale="Viridis", colorbar=dict(title=dict(text="‖Δe‖")),
                         hovertemplate="head %{y}<br>token %{customdata[0]}<br>‖Δe‖ %{z:.3f}<extra></extra>")
    vals, text = axis_ticks(token_labels(tokens, max_chars=14))
    layout = dict(
        xaxis=dict(title=dict(text="token (the embedding being moved)"), tickvals=vals, ticktext=text),
        yaxis=dict(title=dict(text="head"), autorange="reversed", dtick=1),
        title=dict(text=f"Layer {layer}: how far each head moves each token, ‖Δe‖ = ‖head_out‖"),
        height=max(260, 22 * n_heads + 140), margin=margin(),
    )
    if token is not None:  # what add_vrect draws
        layout["shapes"] = [dict(type="rect", x0=token - 0.5, x1=token + 0.5, xref="x", y0=0, y1=1, yref="y domain",
                                 line=dict(color="red", width=2))]
    return go.Figure(data=[heatmap], layout=layout)


def delta_sum_figure(ds: DeltaSum) -> go.Figure:
    """Waterfall: each head's Δe along the attention output's direction, plus b_O, adds up to ‖attn_out‖."""
    names = [f"head {h}" for h in range(len(ds.along))] + (["b_O"] if ds.has_bias else []) + ["attn_out"]
    values = [*ds.along.tolist(), *([ds.bias_along] if ds.has_bias else []), ds.attn_norm]
    measure = ["relative"] * (len(values) - 1) + ["total"]
    waterfall = go.Waterfall(x=names, y=values, measure=measure, hovertemplate="%{x}: %{y:.3f}<extra></extra>")
    return go.Figure(data=[waterfall], layout=dict(
        title=dict(text="Stacked: each head's Δe along the direction of attn_out (they add up to its length)"),
        yaxis=dict(title=dict(text="component along attn_out")), height=360, margin=margin(),
    ))


def delta_dims_figure(ds: DeltaSum, n_dims: int = 48) -> go.Figure:
    """Rows: each head's Δe, b_O, their sum and attn_out, on the dimensions where attn_out is largest."""
    dims = np.sort(np.argsort(-np.abs(ds.attn_out))[:n_dims])
    rows = [*ds.head_out[:, dims], ds.b_O[dims], (ds.heads_sum + ds.b_O)[dims], ds.attn_out[dims]]
    names = [f"head {h}" for h in range(len(ds.head_out))] + ["b_O", "Σ heads + b_O", "attn_out"]
    z = np.stack(rows)
    top = float(np.abs(z).max()) or 1.0
    heatmap = go.Heatmap(z=z, x=[str(d) for d in dims], y=names, colorscale="RdBu_r", zmin=-top, zmax=top,
                         hovertemplate="%{y}<br>dimension %{x}<br>%{z:.4f}<extra></extra>")
    return go.Figure(data=[heatmap], layout=dict(
        yaxis=dict(autorange="reversed"),
        xaxis=dict(title=dict(text=f"the {len(dims)} dimensions (of {len(ds.attn_out)}) where attn_out is largest"),
                   type="category"),
        title=dict(text="The vectors themselves: the last two rows are equal"),
        height=max(300, 20 * len(names) + 140), margin=margin(),
    ))


def value_mix_figure(vf: ValueFactoring, tokens: Sequence[str]) -> go.Figure:
    """Per key token: the pattern weight and the size of its weighted value vector w_j · v_j W_O."""
    hover = position_labels(tokens)
    x = list(range(len(tokens)))
    data = np.array(list(zip(hover, vf.value_norms.tolist(), strict=True)), dtype=object)  # [n, 2]
    bars = [
        go.Bar(x=x, y=vf.weights, customdata=hover, name="weight", xaxis="x", yaxis="y",
               hovertemplate="%{customdata}<br>w %{y:.4f}<extra></extra>"),
        go.Bar(x=x, y=vf.contribution_norms, customdata=data, name="weighted value", marker=dict(color="darkorange"),
               xaxis="x2", yaxis="y2",
               hovertemplate="%{customdata[0]}<br>‖w v W_O‖ %{y:.3f}<br>‖v W_O‖ %{customdata[1]:.3f}<extra></extra>"),
    ]
    vals, text = axis_ticks(token_labels(tokens, max_chars=14))
    axes = stacked_axes(titles=("pattern weight w_j (query → key j)", "‖w_j · v_j W_O[h]‖ (added to Δe)"))
    axes["xaxis2"].update(tickvals=vals, ticktext=text, title=dict(text="key token (whose value vector is mixed in)"))
    return go.Figure(data=bars, layout=dict(
        **axes, title=dict(text=f"Which value vectors query {vf.query} mixes into head {vf.head}'s Δe"),
        showlegend=False, height=460, margin=margin(80),
    ))


def lens_tables(readings: dict[str, LensReading], labels: dict[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(pushed up, pushed down): one column per reading, rows ranked; tokens shown literally."""
    def table(side: str) -> pd.DataFrame:
        cols = {labels[key]: [f"{token_text(t)}  ({v:+.2f})" for t, v in getattr(r, side)]
                for key, r in readings.items()}
        return pd.DataFrame(cols, index=pd.RangeIndex(1, len(next(iter(readings.values())).up) + 1, name="rank"))

    return table("up"), table("down")
