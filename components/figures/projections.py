"""Vector projections (PCA, 2D or 3D): one head's queries and keys, e -> e + Δe, a token's path through layers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from components import content
from components.figures.layout import margin
from components.labels import token_labels
from engine.analysis.projections import PCA, DeltaProjection, PathProjection, QKProjection

MAX_TEXT = 60  # more tokens than this: no text labels on the points, only hover
MAX_ARROWS = 150  # more tokens than this: plain segments instead of arrow annotations

def _scatter(coords: np.ndarray, dims: int, **kwargs) -> go.Scatter | go.Scatter3d:
    """A 2D or 3D scatter of coords [m, >= dims]."""
    if dims == 3:
        return go.Scatter3d(x=coords[:, 0], y=coords[:, 1], z=coords[:, 2], **kwargs)
    return go.Scatter(x=coords[:, 0], y=coords[:, 1], **kwargs)


def _segments(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Line segments start_i -> end_i as one polyline with NaN breaks: [3 m, k]."""
    out = np.full((3 * len(starts), starts.shape[1]), np.nan)
    out[0::3], out[1::3] = starts, ends
    return out


def _layout(basis: PCA, dims: int, title: str) -> dict:
    """Figure layout (a dict for `go.Figure(layout=...)`): axes named by principal component, 2D or 3D."""
    names = [f"PC{i + 1} ({basis.explained[i]:.0%})" for i in range(dims)]
    if dims == 3:
        axes = dict(scene=dict(xaxis=dict(title=dict(text=names[0])), yaxis=dict(title=dict(text=names[1])),
                               zaxis=dict(title=dict(text=names[2]))))
    else:
        axes = dict(xaxis=dict(title=dict(text=names[0])),
                    yaxis=dict(title=dict(text=names[1]), scaleanchor="x", scaleratio=1))
    return dict(**axes, title=dict(text=title), height=560, margin=margin(),
                legend=dict(x=0, y=1))


def qk_figure(p: QKProjection, tokens: Sequence[str], n_top: int, dims: int = 2) -> go.Figure:
    """Queries (circles) and keys (diamonds) in one space; lines from the chosen query to its top keys."""
    labels = token_labels(tokens)
    where = f"layer {p.layer}, head {p.head}"
    traces = []
    for name, coords, symbol in (("queries", p.queries, "circle"), ("keys", p.keys, "diamond")):
        hover = [f"{name[:-1]} {i}: {labels[i]}<br>{where}" for i in range(len(tokens))]
        traces.append(_scatter(coords, dims, mode="markers+text" if len(tokens) <= MAX_TEXT else "markers",
                               name=name, text=token_labels(tokens, 12),
                               textposition="top center", hovertext=hover, hoverinfo="text",
                               marker=dict(symbol=symbol, size=9 if dims == 2 else 5, opacity=0.8)))
    query = p.query
    for rank, j in enumerate(p.top_keys(n_top)):
        w = float(p.weights[j])
        traces.append(_scatter(np.stack([p.queries[query], p.keys[j]]), dims, mode="lines", showlegend=rank == 0,
                               name=f"query {query} → its top keys", legendgroup="top",
                               line=dict(color="crimson", width=1 + 6 * w),
                               hovertext=f"weight {w:.3f}: query {query} → key {j}: {labels[j]}", hoverinfo="text"))
    traces.append(_scatter(p.queries[query : query + 1], dims, mode="markers", name=f"query {query}",
                           marker=dict(color="crimson", size=14 if dims == 2 else 8, symbol="circle-open")))
    return go.Figure(data=traces, layout=_layout(p.basis, dims, f"Queries and keys of {where}, one shared PCA basis"))


def delta_figure(p: DeltaProjection, tokens: Sequence[str], dims: int = 2) -> go.Figure:
    """Arrows from each token's e to e + Δe."""
    labels = token_labels(tokens)
    who = "all heads" if p.head is None else f"head {p.head}"
    hover = [f"{i}: {labels[i]}<br>layer {p.layer}<br>‖Δe‖ {p.delta_norms[i]:.3f}" for i in range(len(tokens))]
    traces = [
        _scatter(_segments(p.before, p.after), dims, mode="lines", name="Δe", hoverinfo="skip",
                 line=dict(color="grey", width=2)),
        _scatter(p.before, dims, mode="markers+text" if len(tokens) <= MAX_TEXT else "markers",
                 name="e (before)", text=token_labels(tokens, 12),
                 textposition="bottom center", hovertext=["e · " + h for h in hover], hoverinfo="text",
                 marker=dict(symbol="circle", size=8 if dims == 2 else 4)),
        _scatter(p.after, dims, mode="markers", name=f"e + Δe ({who})", hoverinfo="text",
                 hovertext=["e + Δe · " + h for h in hover],
                 marker=dict(symbol="diamond", size=9 if dims == 2 else 5)),
    ]
    layout = _layout(p.basis, dims, f"Layer {p.layer}: e → e + Δe of {who}")
    if dims == 2 and len(tokens) <= MAX_ARROWS:
        layout["annotations"] = [
            dict(x=a[0], y=a[1], ax=b[0], ay=b[1], xref="x", yref="y", axref="x", ayref="y", showarrow=True,
                 arrowhead=2, arrowsize=1.2, arrowwidth=1.5, arrowcolor="grey", text="")
            for b, a in zip(p.before, p.after, strict=True)
        ]
    return go.Figure(data=traces, layout=layout)


def path_figure(p: PathProjection, tokens: Sequence[str], dims: int = 2) -> go.Figure:
    """One polyline per chosen token through embedding, block 0, ..., last block."""
    labels = token_labels(tokens)
    names = content.layer_names(p.coords.shape[1] - 1)
    traces = []
    for t, coords in zip(p.tokens, p.coords, strict=True):
        hover = [f"{t}: {labels[t]}<br>{name}" for name in names]
        text = ["emb"] + [""] * (len(names) - 2) + [f"L{len(names) - 2}"]
        traces.append(_scatter(coords, dims, mode="lines+markers+text", name=f"{t}: {labels[t]}", text=text,
                               textposition="top center", hovertext=hover, hoverinfo="text",
                               marker=dict(size=7 if dims == 2 else 4)))
    return go.Figure(data=traces, layout=_layout(p.basis, dims, "Each token's residual vector, layer by layer"))


def basis_table(basis: PCA, dims: int) -> pd.DataFrame:
    """Per component: explained variance and the input dimensions with the largest loadings."""
    rows = []
    for i in range(dims):
        c = basis.components[i]
        top = np.argsort(-np.abs(c))[:5]
        rows.append({"component": f"PC{i + 1}", "explained variance": f"{basis.explained[i]:.1%}",
                     "largest loadings (dimension: weight)": ", ".join(f"{d}: {c[d]:+.2f}" for d in top)})
    return pd.DataFrame(rows)
