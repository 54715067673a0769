"""Figures of the guided walk ("Follow the notes") that no other view draws: vectors as colour strips and the
next-token distribution before and after the sampling settings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from components.figures.layout import margin
from components.labels import plotly_escape, token_labels

STRIP_COLORSCALE = "RdBu_r"
BAR_COLOR, CHOSEN_COLOR = "rgb(107,174,214)", "rgb(230,85,13)"


def strips_figure(rows: np.ndarray, names: Sequence[str], *, title: str, x_title: str,
                  highlight: int | None = None) -> go.Figure:
    """One colour strip per vector, rows [r, d] (e.g. embeddings, a query, keys), on one symmetric scale; names
    are already Plotly-safe; highlight: a row framed in red."""
    rows = np.asarray(rows, dtype=np.float32)  # [r, d]
    bound = max(float(np.abs(rows).max(initial=0.0)), 1e-6)
    y = list(range(len(names)))
    heatmap = go.Heatmap(z=rows, y=y, colorscale=STRIP_COLORSCALE, zmin=-bound, zmax=bound,
                         customdata=np.broadcast_to(np.array(names, dtype=object)[:, None], rows.shape),
                         colorbar=dict(title=dict(text="value")),
                         hovertemplate="%{customdata}<br>dimension %{x}: %{z:.4f}<extra></extra>")
    layout = dict(
        xaxis=dict(title=dict(text=x_title), showgrid=False, automargin=True),
        yaxis=dict(tickvals=y, ticktext=list(names), autorange="reversed", showgrid=False, automargin=True),
        title=dict(text=title), height=min(max(22 * len(names) + 150, 220), 760), margin=margin(),
    )
    if highlight is not None:
        layout["shapes"] = [dict(type="rect", x0=-0.5, x1=rows.shape[1] - 0.5, y0=highlight - 0.5,
                                 y1=highlight + 0.5, xref="x", yref="y", line=dict(color="red", width=2))]
    return go.Figure(data=[heatmap], layout=layout)


def sampling_figure(tokens: Sequence[str], probs: np.ndarray, sampled: np.ndarray, picked: int | None, *,
                    title: str) -> go.Figure:
    """The k most likely next tokens: probability at temperature 1 beside the probability under the settings;
    `picked`: the row of the token a draw picked (framed), or None when it is not among them."""
    labels = token_labels(tokens)
    y = np.arange(len(labels))
    bars = [go.Bar(y=y, x=100 * np.asarray(p, dtype=np.float64), orientation="h", name=name,
                   marker=dict(color=color), customdata=labels,
                   hovertemplate=f"%{{customdata}}<br>{name}: %{{x:.2f}}%<extra></extra>")
            for name, p, color in (("temperature 1", probs, BAR_COLOR), ("with your settings", sampled, CHOSEN_COLOR))]
    shapes = [] if picked is None else [dict(type="rect", xref="x domain", x0=0, x1=1, yref="y", y0=picked - 0.5,
                                             y1=picked + 0.5, line=dict(color="black", width=2, dash="dot"))]
    return go.Figure(data=bars, layout=dict(
        yaxis=dict(tickvals=y, ticktext=labels, autorange="reversed", title=dict(text="next token"), automargin=True),
        xaxis=dict(title=dict(text="probability (%)"), rangemode="tozero", automargin=True),
        title=dict(text=plotly_escape(title)), barmode="group", shapes=shapes, height=max(30 * len(labels) + 140, 260),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0.0), margin=margin(60),
    ))


def layers_figure(norms: np.ndarray, names: Sequence[str], *, title: str) -> go.Figure:
    """Bars of one token's residual-stream size ‖resid‖ at the embedding and after each block [n_layers + 1]."""
    bar = go.Bar(x=list(names), y=np.asarray(norms, dtype=np.float64), marker=dict(color=BAR_COLOR),
                 hovertemplate="%{x}: ‖resid‖ %{y:.3f}<extra></extra>")
    return go.Figure(data=[bar], layout=dict(
        xaxis=dict(type="category", automargin=True), yaxis=dict(title=dict(text="‖resid‖"), rangemode="tozero"),
        title=dict(text=title), height=320, margin=margin(),
    ))


def change_figure(e: np.ndarray, delta: np.ndarray, *, title: str, n_dims: int = 32) -> go.Figure:
    """e and e + Δe [d_model] as grouped bars on the n_dims dimensions where Δe is largest (in index order), so
    the change shows even where a few huge dimensions of e would swamp a colour scale."""
    e, delta = np.asarray(e, dtype=np.float64), np.asarray(delta, dtype=np.float64)
    dims = np.sort(np.argsort(-np.abs(delta))[:n_dims])
    x = [str(d) for d in dims]
    bars = [go.Bar(x=x, y=e[dims], name="e", marker=dict(color=BAR_COLOR),
                   hovertemplate="dimension %{x}<br>e: %{y:.4f}<extra></extra>"),
            go.Bar(x=x, y=(e + delta)[dims], name="e + Δe", marker=dict(color=CHOSEN_COLOR),
                   hovertemplate="dimension %{x}<br>e + Δe: %{y:.4f}<extra></extra>")]
    return go.Figure(data=bars, layout=dict(
        xaxis=dict(type="category", title=dict(text=f"the {len(dims)} dimensions (of {len(e)}) where Δe is largest")),
        yaxis=dict(title=dict(text="value"), automargin=True), barmode="group", title=dict(text=title),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0.0), height=380, margin=margin(60),
    ))
