"""Attention rollout: how much of one token, after each layer, comes from each input token (layers × tokens)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from components.figures.layout import margin
from components.labels import axis_ticks, plotly_escape, position_labels, token_labels


def rollout_figure(values: np.ndarray, tokens: Sequence[str], title: str) -> go.Figure:
    """values [n_layers, n]: row l is the rollout after layer l over the input tokens (each row sums to 1);
    rows = layers (0 at the top), columns = input tokens. Colour from 0 to the largest value."""
    z = np.asarray(values, dtype=np.float32)  # [n_layers, n]
    n_layers, n = z.shape
    if n != len(tokens):
        raise ValueError(f"values have {n} columns for {len(tokens)} tokens")
    labels = np.array(position_labels(tokens), dtype=object)
    vals, text = axis_ticks(token_labels(tokens, max_chars=12), max_ticks=40)
    heatmap = go.Heatmap(z=z, x=np.arange(n), y=np.arange(n_layers), customdata=np.broadcast_to(labels, z.shape),
                         colorscale="Blues", zmin=0.0, zmax=max(float(z.max(initial=0.0)), 1e-9),
                         colorbar=dict(title=dict(text="share")),
                         hovertemplate="after layer %{y}<br>from %{customdata}: %{z:.4f}<extra></extra>")
    return go.Figure(data=[heatmap], layout=dict(
        title=dict(text=plotly_escape(title)), margin=margin(),
        xaxis=dict(title=dict(text="input token"), tickvals=vals, ticktext=text, showgrid=False, zeroline=False,
                   automargin=True),
        yaxis=dict(title=dict(text="layer"), autorange="reversed", showgrid=False, zeroline=False, automargin=True),
        height=min(max(14 * n_layers + 160, 280), 640)))
