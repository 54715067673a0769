"""Attention sinks: each head's share of attention on the first token, by weight α and by what it contributes."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from components.figures.layout import layer_head_figure, margin

SHARE_COLORSCALE = "Magma"


def share_map_figure(shares: np.ndarray, title: str) -> go.Figure:
    """A first-token share per head, shares [n_layers, n_heads] in 0..1 (NaN: a head switched off)."""
    return layer_head_figure(shares, title=title, colorbar="share", colorscale=SHARE_COLORSCALE, zmin=0.0, zmax=1.0)


def share_scatter_figure(raw: np.ndarray, weighted: np.ndarray) -> go.Figure:
    """One point per head: its share of α on the first token (x) against its value-weighted share (y). Heads
    below the diagonal look at the first token more than they take from it. Switched-off heads (NaN) are left
    out."""
    raw, weighted = np.asarray(raw, dtype=np.float64), np.asarray(weighted, dtype=np.float64)  # [n_layers, n_heads]
    layers, heads = np.nonzero(np.isfinite(weighted))
    colors = dict(size=6, color=layers, colorscale="Viridis", colorbar=dict(title=dict(text="layer")))
    points = go.Scatter(x=raw[layers, heads], y=weighted[layers, heads], mode="markers", name="heads", marker=colors,
                        customdata=np.stack([layers, heads], 1),
                        hovertemplate="layer %{customdata[0]}, head %{customdata[1]}<br>share of α %{x:.3f}"
                                      "<br>value-weighted share %{y:.3f}<extra></extra>")
    diagonal = go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"), hoverinfo="skip",
                          showlegend=False)
    return go.Figure(data=[diagonal, points], layout=dict(
        xaxis=dict(title=dict(text="share of α on the first token"), range=[-0.02, 1.02]),
        yaxis=dict(title=dict(text="value-weighted share on the first token"), range=[-0.02, 1.02]),
        showlegend=False, height=420, margin=margin(40)))
