"""Query·key detail for one head and one query token: the scores, the vectors, and their products."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from components.figures.layout import MASKED_COLOR, margin, stacked_axes
from components.labels import axis_ticks, token_labels

VECTOR_COLORSCALE = "RdBu_r"
BAR_COLOR, WINNER_COLOR = "rgb(107,174,214)", "rgb(230,85,13)"
MASK_MARK = "⊘ "  # prefixes the tick label of a key this query can't see


def _bound(a: np.ndarray) -> float:
    return max(float(np.abs(a).max(initial=0.0)), 1e-6)


def _key_axis(labels: list[str], masked: np.ndarray) -> dict:
    vals, text = axis_ticks([MASK_MARK + lab if m else lab for lab, m in zip(labels, masked, strict=True)])
    return dict(tickvals=vals, ticktext=text)


def qk_figures(
    q: np.ndarray,
    keys: np.ndarray,
    tokens: Sequence[str],
    query_index: int,
    *,
    masked: np.ndarray | None = None,
    d_head: int | None = None,
) -> dict[str, go.Figure]:
    """Figures "scores", "vectors" and "products" for query vector q [d_head] against keys [n, d_head].

    masked bool [n] (True = key hidden from this query) greys those bars and says "−∞ (masked)" in hover;
    the highest unmasked score is highlighted. products[j, i] = q_i·k_ji, so products.sum(1)/√d_head = scores.
    """
    q = np.asarray(q, dtype=np.float32)  # [d_head]
    keys = np.asarray(keys, dtype=np.float32)  # [n, d_head]
    n, d = keys.shape
    if q.shape != (d,) or len(tokens) != n:
        raise ValueError(f"q {q.shape}, keys {keys.shape} and {len(tokens)} tokens don't match")
    d_head = d if d_head is None else int(d_head)
    root = math.sqrt(d_head)
    hidden = np.zeros(n, bool) if masked is None else np.asarray(masked, bool)  # [n]
    products = keys * q[None, :]  # [n, d_head]
    scores = products.sum(axis=1) / root  # [n]
    labels = token_labels(tokens)
    query = f"query {query_index}: {labels[query_index]}"
    scale = f"√d_head = √{d_head} = {root:.2f}"
    winner = int(np.argmax(np.where(hidden, -np.inf, scores))) if not hidden.all() else -1
    return {
        "scores": _scores_figure(scores, hidden, labels, winner, query_index, f"q·k / √d_head for {query} ({scale})"),
        "vectors": _vectors_figure(q, keys, hidden, labels, f"{query}: its query vector q and every key k"),
        "products": _products_figure(q, keys, products, hidden, labels,
                                     f"q_i·k_i per dimension for {query}: a row sums to q·k, divided by {scale}"),
    }


def _scores_figure(scores: np.ndarray, hidden: np.ndarray, labels: list[str], winner: int, query_index: int,
                   title: str) -> go.Figure:
    """Bar per key [n]: score height; masked bars grey and hatched (their own trace), the winner highlighted."""
    colors = np.full(len(scores), BAR_COLOR, dtype=object)
    text = [f"−∞ (masked; q·k/√d_head would be {s:.3f})" if m else f"q·k/√d_head = {s:.3f}"
            for s, m in zip(scores, hidden, strict=True)]
    if winner >= 0:
        colors[winner] = WINNER_COLOR
        text[winner] += " · highest"
    data = np.stack([labels, text], axis=1)  # [n, 2]
    bars = [go.Bar(x=np.flatnonzero(keep), y=scores[keep].astype(np.float32), name=name, marker=style,
                   customdata=data[keep].tolist(), showlegend=False,
                   hovertemplate="key %{x:d}: %{customdata[0]}<br>%{customdata[1]}<extra></extra>")
            for name, keep, style in (("keys", ~hidden, dict(color=colors[~hidden].tolist())),
                                      ("masked keys", hidden, dict(color=MASKED_COLOR, pattern=dict(shape="/"))))]
    query_line = dict(type="line", x0=query_index, x1=query_index, xref="x", y0=0, y1=1, yref="y domain",
                      line=dict(color="rgb(120,120,120)", dash="dot", width=1))  # what add_vline draws
    return go.Figure(data=bars, layout=dict(
        xaxis=dict(title=dict(text="key: attending to"), range=[-0.5, len(scores) - 0.5], automargin=True,
                   **_key_axis(labels, hidden)),
        yaxis=dict(title=dict(text="score q·k / √d_head"), zeroline=True, automargin=True),
        shapes=[query_line], title=dict(text=title), barmode="overlay", bargap=0.15,
        margin=margin(),
    ))


def _vectors_figure(q: np.ndarray, keys: np.ndarray, hidden: np.ndarray, labels: list[str],
                    title: str) -> go.Figure:
    """Colour strips d_head wide: one row for q, below it one row per key."""
    bound = _bound(np.concatenate([q[None, :], keys]))
    common = dict(colorscale=VECTOR_COLORSCALE, zmin=-bound, zmax=bound)
    strips = [
        go.Heatmap(z=q[None, :], showscale=False, hovertemplate="q_%{x} = %{z:.3f}<extra></extra>", xaxis="x",
                   yaxis="y", **common),
        go.Heatmap(z=keys, colorbar=dict(title=dict(text="value")), xaxis="x2", yaxis="y2",
                   hovertemplate="key %{y:d}: k_%{x} = %{z:.3f}<extra></extra>", **common),
    ]
    axes = stacked_axes(heights=(1, max(len(keys), 1)), spacing=0.04)
    axes["xaxis"].update(automargin=True)
    axes["yaxis"].update(tickvals=[0], ticktext=["q"], showgrid=False, automargin=True)
    axes["xaxis2"].update(title=dict(text="dimension i of d_head"), showgrid=False, automargin=True)
    axes["yaxis2"].update(title=dict(text="key"), autorange="reversed", showgrid=False, automargin=True,
                          **_key_axis(labels, hidden))
    return go.Figure(data=strips, layout=dict(
        **axes, title=dict(text=title), height=min(max(16 * len(keys) + 160, 260), 900), margin=margin(),
    ))


def _products_figure(q: np.ndarray, keys: np.ndarray, products: np.ndarray, hidden: np.ndarray,
                     labels: list[str], title: str) -> go.Figure:
    """Heatmap of q_i·k_ji, keys × dimensions [n, d_head]; hover gives i, q_i, k_i and the product."""
    parts = np.stack([np.broadcast_to(q[None, :], keys.shape), keys], axis=-1)  # [n, d_head, 2]
    heatmap = go.Heatmap(
        z=products, customdata=parts.astype(np.float32), colorscale=VECTOR_COLORSCALE,
        zmin=-_bound(products), zmax=_bound(products), colorbar=dict(title=dict(text="q_i·k_i")),
        hovertemplate=("key %{y:d} · i = %{x}<br>q_i = %{customdata[0]:.3f}<br>k_i = %{customdata[1]:.3f}"
                       "<br>q_i·k_i = %{z:.3f}<extra></extra>"),
    )
    return go.Figure(data=[heatmap], layout=dict(
        xaxis=dict(title=dict(text="dimension i of d_head"), showgrid=False, automargin=True),
        yaxis=dict(title=dict(text="key"), autorange="reversed", showgrid=False, automargin=True,
                   **_key_axis(labels, hidden)),
        title=dict(text=title), height=min(max(16 * len(keys) + 140, 260), 900),
        margin=margin(),
    ))
