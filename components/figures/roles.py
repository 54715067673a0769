"""Head roles: a role's scores as a layers × heads map, a top head's pattern on the probe as a thumbnail, and the
in-context learning check (next-token loss along the probe, with and without switched-off heads)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from components.figures import matrix as _matrix
from components.figures.layout import margin
from components.labels import plotly_escape, position_labels

ROLE_COLORSCALE = "Viridis"
CURRENT_COLOR = "#d62728"  # the run with the visitor's switches
UNMODIFIED_COLOR = "rgb(120,120,120)"  # every head on


def role_maps_figure(scores: Mapping[str, np.ndarray], titles: Mapping[str, str]) -> go.Figure:
    """Every role's scores side by side, one layers × heads map per role (scores[role]: [n_layers, n_heads] in
    0..1, NaN where the role has no defined position) on one 0–1 colour scale. Each map is a heatmap named by
    its role id; titles[role] goes above it."""
    roles = list(scores)
    gap = 0.025
    width = (1 - gap * (len(roles) - 1)) / len(roles)
    data, layout, annotations = [], {}, []
    for i, role in enumerate(roles):
        z = np.asarray(scores[role], dtype=np.float32)  # [n_layers, n_heads]
        n_layers, n_heads = z.shape
        axis = "" if i == 0 else str(i + 1)
        left = i * (width + gap)
        title = plotly_escape(titles[role])
        data.append(go.Heatmap(z=z, name=role, xaxis=f"x{axis}", yaxis=f"y{axis}", coloraxis="coloraxis",
                               hovertemplate=f"{title}<br>layer %{{y}}, head %{{x}}: %{{z:.3f}}<extra></extra>"))
        layout[f"xaxis{axis}"] = dict(domain=[left, left + width], anchor=f"y{axis}", title=dict(text="head"),
                                      dtick=1 if n_heads <= 9 else 2, showgrid=False, zeroline=False)
        layout[f"yaxis{axis}"] = dict(anchor=f"x{axis}", autorange="reversed", showgrid=False, zeroline=False,
                                      showticklabels=i == 0, title=dict(text="layer" if i == 0 else ""))
        annotations.append(dict(text=title, font=dict(weight="bold"), x=left + width / 2, xref="paper", y=1,
                                yref="paper", yanchor="bottom", showarrow=False))
    return go.Figure(data=data, layout=dict(
        layout, annotations=annotations, margin=margin(30), height=min(max(12 * n_layers + 110, 250), 480),
        coloraxis=dict(colorscale=ROLE_COLORSCALE, cmin=0.0, cmax=1.0, colorbar=dict(title=dict(text="score")))))


def thumbnail_figure(pattern: np.ndarray, tokens: Sequence[str], title: str, second: int | None = None) -> go.Figure:
    """A small heatmap of one head's pattern [n, n] on the probe (query rows, 0–1), no tick labels; hover names
    query, key and weight. second: where the probe's second copy starts (dotted lines there)."""
    z = np.asarray(pattern, dtype=np.float32)  # [n_query, n_key]
    n = len(tokens)
    if z.shape != (n, n):
        raise ValueError(f"pattern has shape {z.shape}, expected [{n}, {n}]")
    heatmap = go.Heatmap(z=z, customdata=_matrix.cell_data(tokens, "query_rows"), colorscale="Blues", zmin=0.0,
                         zmax=1.0, showscale=False, hovertemplate=_matrix.cell_hover("query_rows", "weight %{z:.3f}"))
    lines = [] if second is None else [
        dict(type="line", x0=second - 0.5, x1=second - 0.5, y0=-0.5, y1=n - 0.5, line=dict(dash="dot", width=1)),
        dict(type="line", y0=second - 0.5, y1=second - 0.5, x0=-0.5, x1=n - 0.5, line=dict(dash="dot", width=1))]
    axis = dict(showticklabels=False, showgrid=False, zeroline=False, range=[-0.5, n - 0.5], constrain="domain")
    return go.Figure(data=[heatmap], layout=dict(
        title=dict(text=plotly_escape(title), font=dict(size=13)), height=260, margin=margin(40), shapes=lines,
        xaxis=dict(axis, title=dict(text="key")),
        yaxis=dict(axis, title=dict(text="query"), range=[n - 0.5, -0.5], autorange=False, scaleanchor="x"),
        plot_bgcolor="white"))


def top_heads_table(heads: Sequence[tuple[int, int]], reference: np.ndarray, current: np.ndarray,
                    off: Sequence[bool]) -> pd.DataFrame:
    """One row per top head: layer, head, its score with every head on, its score now, and whether it is off."""
    return pd.DataFrame({
        "layer": [layer for layer, _ in heads], "head": [head for _, head in heads],
        "every head on": [float(reference[la, h]) for la, h in heads],
        "now": [float(current[la, h]) for la, h in heads],
        "off": list(off),
    })


def loss_figure(current: np.ndarray, unmodified: np.ndarray, tokens: Sequence[str], first: slice, second: slice,
                changed: bool) -> go.Figure:
    """Next-token loss (nats) of every probe token: the unmodified run, and (changed) the run with switches.

    current, unmodified: [n], NaN at position 0; first, second: the probe's two copies. Each copy's mean is a
    short horizontal line over it."""
    positions = np.arange(len(tokens))
    labels = np.array(position_labels(tokens), dtype=object)
    runs = [("every head on", unmodified, UNMODIFIED_COLOR)]
    if changed:
        runs.append(("with your switches", current, CURRENT_COLOR))
    data = []
    for name, loss, color in runs:
        loss = np.asarray(loss, dtype=np.float64)  # [n]
        data.append(go.Scatter(x=positions, y=loss, mode="lines", name=name, line=dict(color=color, width=1.5),
                               customdata=labels,
                               hovertemplate=f"{name}<br>%{{customdata}}<br>loss %{{y:.2f}} nats<extra></extra>"))
        for part in (first, second):
            mean = float(np.nanmean(loss[part]))
            data.append(go.Scatter(x=[part.start - 0.5, part.stop - 0.5], y=[mean, mean], mode="lines",
                                   line=dict(color=color, width=3, dash="dash"), showlegend=False,
                                   hovertemplate=f"{name}<br>mean over this copy: {mean:.2f} nats<extra></extra>"))
    return go.Figure(data=data, layout=dict(
        xaxis=dict(title=dict(text="probe position (the token predicted)"), zeroline=False),
        yaxis=dict(title=dict(text="next-token loss (nats)"), rangemode="tozero"),
        shapes=[dict(type="line", x0=second.start - 0.5, x1=second.start - 0.5, y0=0, y1=1, yref="paper",
                     line=dict(dash="dot", width=1, color="black"))],
        annotations=[dict(x=(part.start + part.stop) / 2, y=1, yref="paper", yanchor="bottom", showarrow=False,
                          text=text) for part, text in ((first, "first copy"), (second, "second copy (repeated)"))],
        legend=dict(orientation="h", y=-0.25), height=380, margin=margin(40), hovermode="closest"))


def loss_table(first: Sequence[float], second: Sequence[float], runs: Sequence[str]) -> pd.DataFrame:
    """Mean next-token loss on each copy of the probe, one row per run."""
    return pd.DataFrame({"run": list(runs), "first copy (nats)": [float(x) for x in first],
                         "second copy (nats)": [float(x) for x in second]})
