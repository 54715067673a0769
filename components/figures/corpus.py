"""The Corpus view's figures: a statistic over the corpus as a layers × heads map, the heads placed by their
statistics (coloured by role, labelled by cluster), and one head's joint query–key map."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from components.figures.heads import BADGES
from components.figures.layout import layer_head_figure, margin
from components.labels import plotly_escape

NO_ROLE_COLOR = "rgb(170,170,170)"
QUERY_COLOR, KEY_COLOR = "#1f77b4", "#ff7f0e"
FOCUS_COLOR = "#000000"


def stat_map_figure(values: np.ndarray, title: str, colorbar: str, focus: tuple[int, int]) -> go.Figure:
    """values [n_layers, n_heads] as a heatmap (click a cell to focus that head); the focused head outlined."""
    fig = layer_head_figure(values, title=plotly_escape(title), colorbar=plotly_escape(colorbar))
    layer, head = focus
    fig.add_shape(type="rect", x0=head - 0.5, x1=head + 0.5, y0=layer - 0.5, y1=layer + 0.5,
                  line=dict(color=FOCUS_COLOR, width=2), name="focus")
    return fig


def cluster_figure(xy: np.ndarray, cluster: np.ndarray, role: Sequence[str | None], role_labels: dict[str, str],
                   n_heads: int, focus: tuple[int, int], hover: Sequence[str], explained: np.ndarray) -> go.Figure:
    """Every head as a point at xy [L·H, 2] (head h of layer l at row l·H + h), one trace per role (None: no role
    reaches the threshold), its cluster number as the text; customdata [layer, head] for clicks."""
    layer, head = np.divmod(np.arange(len(xy)), n_heads)
    data = []
    for role_id in [*role_labels, None]:
        rows = np.array([r == role_id for r in role])
        if not rows.any():
            continue
        name = role_labels[role_id] if role_id else "no role above the threshold"
        color = BADGES[role_id][1] if role_id else NO_ROLE_COLOR
        data.append(go.Scatter(
            x=xy[rows, 0], y=xy[rows, 1], mode="markers+text", name=plotly_escape(name),
            text=[str(c) for c in cluster[rows]], textposition="top center", textfont=dict(size=8, color=color),
            marker=dict(color=color, size=9, line=dict(width=0.5, color="white")),
            customdata=np.stack([layer[rows], head[rows]], 1),
            hovertext=[hover[i] for i in np.flatnonzero(rows)], hovertemplate="%{hovertext}<extra></extra>"))
    i = focus[0] * n_heads + focus[1]
    data.append(go.Scatter(x=[xy[i, 0]], y=[xy[i, 1]], mode="markers", name=f"focused: {focus[0]}.{focus[1]}",
                           marker=dict(size=18, color="rgba(0,0,0,0)", line=dict(width=2, color=FOCUS_COLOR)),
                           hoverinfo="skip"))
    return go.Figure(data=data, layout=dict(
        xaxis=dict(title=dict(text=f"PC 1 ({explained[0]:.0%} of the variance)"), zeroline=False),
        yaxis=dict(title=dict(text=f"PC 2 ({explained[1]:.0%})"), zeroline=False),
        height=520, margin=margin(30), legend=dict(title=dict(text="strongest role"))))


def joint_figure(xy: np.ndarray, is_key: np.ndarray, colour: np.ndarray | None, colour_title: str,
                 hover: Sequence[str], customdata: np.ndarray, title: str, axes: tuple[str, str]) -> go.Figure:
    """Queries and keys of one head as points xy [n, 2] (is_key [n] bool); colour None: by query/key, else a
    continuous colour [n] (e.g. the position). hover: one literal line per point; customdata [n, 2] (text id,
    position) for clicks."""
    data = []
    for kind, name, rows, symbol, fixed in (("query", "queries", ~is_key, "circle", QUERY_COLOR),
                                            ("key", "keys", is_key, "diamond", KEY_COLOR)):
        marker = dict(size=5, symbol=symbol, opacity=0.75)
        if colour is None:
            marker["color"] = fixed
        else:
            marker.update(color=colour[rows], colorscale="Viridis", cmin=float(colour.min()),
                          cmax=float(colour.max()), colorbar=dict(title=dict(text=plotly_escape(colour_title)))
                          if kind == "query" else None, showscale=kind == "query")
        data.append(go.Scattergl(x=xy[rows, 0], y=xy[rows, 1], mode="markers", name=name, marker=marker,
                                 customdata=customdata[rows], hovertext=[hover[i] for i in np.flatnonzero(rows)],
                                 hovertemplate=f"{kind}: %{{hovertext}}<extra></extra>"))
    return go.Figure(data=data, layout=dict(
        title=dict(text=plotly_escape(title)), height=600, margin=margin(),
        xaxis=dict(title=dict(text=axes[0]), zeroline=False), yaxis=dict(title=dict(text=axes[1]), zeroline=False)))
