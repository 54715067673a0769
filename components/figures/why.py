"""Figures of the Why view: head attributions as a layers × heads map, the largest parts as bars, a head's part by
source token, a score's query part × key part map, and the information-flow graph with its route."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from components.figures.layout import margin
from components.labels import plotly_escape, token_labels, token_text

DIVERGING = "RdBu"
ROUTE_COLOR = "rgb(214,39,40)"
GRAPH_COLOR = "rgba(120,120,120,0.35)"


def head_map_figure(values: np.ndarray, title: str, colorbar: str) -> go.Figure:
    """values [n_layers, n_heads] around 0 (red: pushes toward the target); each cell carries [layer, head] for a
    click."""
    z = np.asarray(values, dtype=np.float64)
    n_layers, n_heads = z.shape
    bound = max(float(np.abs(z).max(initial=0.0)), 1e-9)
    layers, heads = np.mgrid[0:n_layers, 0:n_heads]
    heatmap = go.Heatmap(z=z, zmin=-bound, zmax=bound, zmid=0.0, colorscale=DIVERGING, reversescale=True,
                         colorbar=dict(title=dict(text=plotly_escape(colorbar))), hoverinfo="skip")
    cells = go.Scatter(x=heads.ravel(), y=layers.ravel(), mode="markers", showlegend=False,
                       customdata=np.stack([layers.ravel(), heads.ravel()], 1).tolist(),
                       text=[f"head {la}.{h}: {z[la, h]:+.3f}" for la, h in zip(layers.ravel(), heads.ravel(),
                                                                                 strict=True)],
                       hovertemplate="%{text}<extra></extra>", marker=dict(symbol="square", size=12, opacity=0),
                       selected=dict(marker=dict(opacity=0)), unselected=dict(marker=dict(opacity=0)))
    return go.Figure(data=[heatmap, cells], layout=dict(
        title=dict(text=plotly_escape(title)), height=max(300, 14 * n_layers + 140), margin=margin(),
        xaxis=dict(title=dict(text="head"), showgrid=False, zeroline=False, dtick=1 if n_heads <= 16 else None),
        yaxis=dict(title=dict(text="layer"), autorange="reversed", showgrid=False, zeroline=False),
        hovermode="closest"))


def parts_bar_figure(names: Sequence[str], values: Sequence[float], title: str, axis: str) -> go.Figure:
    """Horizontal bars, one per named part, the first at the top."""
    values = [float(v) for v in values]
    colors = ["rgb(178,24,43)" if v >= 0 else "rgb(33,102,172)" for v in values]
    bars = go.Bar(x=values, y=[plotly_escape(n) for n in names], orientation="h", marker=dict(color=colors),
                  hovertemplate="%{y}: %{x:+.3f}<extra></extra>")
    return go.Figure(data=[bars], layout=dict(
        title=dict(text=plotly_escape(title)), height=max(250, 22 * len(values) + 120), margin=margin(),
        xaxis=dict(title=dict(text=plotly_escape(axis)), zeroline=True),
        yaxis=dict(autorange="reversed", type="category")))


def by_source_figure(values: np.ndarray, tokens: Sequence[str], title: str) -> go.Figure:
    """One head's part split by the key token it read from: values [n_tokens]."""
    labels = [f"{i}: {token_text(t)}" for i, t in enumerate(tokens)]  # escaped once, by parts_bar_figure
    return parts_bar_figure(labels, values, title, "part of the logit difference")


def terms_figure(terms: np.ndarray, parts: Sequence[str], title: str) -> go.Figure:
    """terms [n_parts, n_parts]: query parts (rows) × key parts (columns), diverging around 0."""
    z = np.asarray(terms, dtype=np.float64)
    bound = max(float(np.abs(z).max(initial=0.0)), 1e-9)
    names = [plotly_escape(p) for p in parts]
    heatmap = go.Heatmap(z=z, x=names, y=names, zmin=-bound, zmax=bound, zmid=0.0, colorscale=DIVERGING,
                         reversescale=True, colorbar=dict(title=dict(text="term")),
                         hovertemplate="query part %{y} · key part %{x}: %{z:+.3f}<extra></extra>")
    return go.Figure(data=[heatmap], layout=dict(
        title=dict(text=plotly_escape(title)), height=650, margin=margin(),
        xaxis=dict(title=dict(text="key part"), type="category", showgrid=False),
        yaxis=dict(title=dict(text="query part"), type="category", autorange="reversed", showgrid=False)))


def largest_terms(terms: np.ndarray, parts: Sequence[str], m: int = 8) -> pd.DataFrame:
    """The m terms of largest size: query part, key part, term."""
    flat = np.argsort(-np.abs(terms), axis=None, kind="stable")[:m]
    rows, cols = np.unravel_index(flat, terms.shape)
    return pd.DataFrame({"query part": [parts[r] for r in rows], "key part": [parts[c] for c in cols],
                         "term": [float(terms[r, c]) for r, c in zip(rows, cols, strict=True)]})


def edge_name(layer: int, kind: str, head: int) -> str:
    if kind == "head":
        return f"head {layer}.{head}"
    return {"attn_residual": f"residual past attention {layer}", "mlp": f"MLP {layer}",
            "mlp_residual": f"residual past MLP {layer}"}[kind]


def flow_figure(tokens: Sequence[str], n_layers: int, graph: Sequence, route: Sequence, title: str) -> go.Figure:
    """The information-flow graph: token positions along x, levels up y (2·layer: entering the layer, 2·layer + 1:
    after its attention). `graph` edges grey, `route` edges red; width by share. Head edges of the route carry
    [layer, head] for a click. Edges: objects with layer, kind, head, query, key, share and levels."""
    data = []
    for edges, color, name in ((graph, GRAPH_COLOR, "above the threshold"), (route, ROUTE_COLOR, "route")):
        for width in (1, 3, 6):  # three widths: one line trace each (a trace has one width)
            xs, ys = [], []
            for e in edges:
                if _width(e.share) != width:
                    continue
                src, dst = e.levels
                xs += [e.key, e.query, None]
                ys += [src, dst, None]
            if xs:
                data.append(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=color, width=width),
                                       hoverinfo="skip", name=f"{name}, share ~{width / 10:.1f}", showlegend=False))
    heads = [e for e in route if e.kind == "head"]
    if heads:  # a clickable marker in the middle of each head edge of the route
        data.append(go.Scatter(
            x=[(e.key + e.query) / 2 for e in heads], y=[e.levels[0] + 0.5 for e in heads], mode="markers",
            marker=dict(color=ROUTE_COLOR, size=8), showlegend=False,
            customdata=[[e.layer, e.head] for e in heads],
            text=[plotly_escape(f"head {e.layer}.{e.head}: key {e.key} “{token_text(tokens[e.key])}” → query "
                                f"{e.query} “{token_text(tokens[e.query])}”, share {e.share:.2f}") for e in heads],
            hovertemplate="%{text}<extra></extra>"))
    labels = token_labels(tokens)
    return go.Figure(data=data, layout=dict(
        title=dict(text=plotly_escape(title)), height=max(400, 12 * n_layers + 200), margin=margin(),
        xaxis=dict(title=dict(text="token"), tickvals=list(range(len(tokens))),
                   ticktext=[plotly_escape(t) for t in labels], showgrid=False),
        yaxis=dict(title=dict(text="layer"), tickvals=[2 * la for la in range(n_layers + 1)],
                   ticktext=[str(la) for la in range(n_layers)] + ["out"], showgrid=False),
        hovermode="closest"))


def _width(share: float) -> int:
    return 1 if share < 0.2 else 3 if share < 0.5 else 6
