"""Word senses: one word's vector in several sentences, compared layer by layer."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from components import content
from components.figures.layout import layer_head_figure, margin
from components.labels import plotly_escape
from engine.analysis.projections import PCA
from engine.analysis.senses import sense_curves, sense_pairs

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _sense_colors(labels: Sequence[str]) -> list[str]:
    senses = list(dict.fromkeys(labels))
    return [COLORS[senses.index(label) % len(COLORS)] for label in labels]


def similarity_figure(sim: np.ndarray, names: Sequence[str], title: str, zmin: float | None = None) -> go.Figure:
    """Cosine similarity [S, S] between the sentences' target vectors; zmin fixes the colour scale's floor."""
    labels = [plotly_escape(n) for n in names]
    heatmap = go.Heatmap(z=sim, x=labels, y=labels, zmin=float(sim.min()) if zmin is None else zmin, zmax=1.0,
                         colorscale="Viridis", texttemplate="%{z:.2f}",
                         colorbar=dict(title=dict(text="cosine")),
                         hovertemplate="%{y}<br>%{x}<br>cosine %{z:.3f}<extra></extra>")
    return go.Figure(data=[heatmap], layout=dict(
        yaxis=dict(autorange="reversed", type="category"), xaxis=dict(type="category"),
        title=dict(text=title), height=420, margin=margin(),
    ))


def similarity_lines_figure(similarity: np.ndarray, names: Sequence[str], labels: Sequence[str]) -> go.Figure:
    """Similarity of every pair across layers (faint), with the same-sense and different-sense means."""
    steps = content.layer_names(similarity.shape[0] - 1)
    traces = []
    same, different = sense_pairs(labels)
    kind = {pair: "same" for pair in same} | {pair: "different" for pair in different}
    colors = {"same": "#2ca02c", "different": "#d62728", "pair": "grey"}
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            group = kind.get((i, j), "pair")
            traces.append(go.Scatter(x=steps, y=similarity[:, i, j], mode="lines", opacity=0.35, showlegend=False,
                                     line=dict(color=colors[group], width=1),
                                     hovertext=plotly_escape(f"{names[i]} · {names[j]} ({group} sense)"),
                                     hovertemplate="%{hovertext}<br>%{x}: %{y:.3f}<extra></extra>"))
    for name, curve in sense_curves(similarity, labels).items():
        traces.append(go.Scatter(x=steps, y=curve, mode="lines+markers", name=f"mean, {name}-sense pairs",
                                 line=dict(color=colors[name], width=3)))
    return go.Figure(data=traces, layout=dict(
        title=dict(text="Cosine similarity across layers"), yaxis=dict(title=dict(text="cosine")), height=420,
        margin=margin(), legend=dict(x=0, y=0),
    ))


def trajectory_figure(coords: np.ndarray, basis: PCA, names: Sequence[str], labels: Sequence[str]) -> go.Figure:
    """One 2D path per sentence through the layers (coords [S, n_layers + 1, 2])."""
    steps = content.layer_names(coords.shape[1] - 1)
    traces = []
    for name, path, color in zip(names, coords, _sense_colors(labels), strict=True):
        text = ["emb"] + [""] * (len(steps) - 2) + ["last"]
        traces.append(go.Scatter(x=path[:, 0], y=path[:, 1], mode="lines+markers+text", name=plotly_escape(name),
                                 text=text, textposition="top center", line=dict(color=color),
                                 hovertext=[f"{plotly_escape(name)}<br>{plotly_escape(s)}" for s in steps],
                                 hoverinfo="text"))
    return go.Figure(data=traces, layout=dict(
        xaxis=dict(title=dict(text=f"PC1 ({basis.explained[0]:.0%})")),
        yaxis=dict(title=dict(text=f"PC2 ({basis.explained[1]:.0%})"), scaleanchor="x", scaleratio=1),
        title=dict(text="The target's direction, layer by layer (unit vectors, one PCA basis)"), height=520,
        margin=margin(),
    ))


def divergence_figure(div: np.ndarray) -> go.Figure:
    """[n_layers, n_heads] mean ‖Δe_a − Δe_b‖ at the target."""
    return layer_head_figure(div, title="Which heads push the senses apart", colorbar="‖Δe_a − Δe_b‖",
                             colorscale="Magma", height=max(300, 14 * div.shape[0] + 140))
