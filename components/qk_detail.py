"""Query·key detail for one head and one query token: the scores, the vectors, and their products."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from components.labels import axis_ticks, token_labels

VECTOR_COLORSCALE = "RdBu_r"
BAR_COLOR, WINNER_COLOR, MASKED_COLOR = "rgb(107,174,214)", "rgb(230,85,13)", "rgb(200,200,200)"
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
    fig = go.Figure()
    for name, keep, style in (("keys", ~hidden, dict(color=colors[~hidden].tolist())),
                              ("masked keys", hidden, dict(color=MASKED_COLOR, pattern_shape="/"))):
        fig.add_trace(go.Bar(x=np.flatnonzero(keep), y=scores[keep].astype(np.float32), name=name, marker=style,
                             customdata=data[keep].tolist(), showlegend=False,
                             hovertemplate="key %{x:d}: %{customdata[0]}<br>%{customdata[1]}<extra></extra>"))
    fig.add_vline(x=query_index, line=dict(color="rgb(120,120,120)", dash="dot", width=1))
    fig.update_xaxes(title_text="key: attending to", range=[-0.5, len(scores) - 0.5], **_key_axis(labels, hidden))
    fig.update_yaxes(title_text="score q·k / √d_head", zeroline=True)
    fig.update_layout(title_text=title, barmode="overlay", bargap=0.15, margin=dict(l=10, r=10, t=50, b=10))
    return fig.update_xaxes(automargin=True).update_yaxes(automargin=True)


def _vectors_figure(q: np.ndarray, keys: np.ndarray, hidden: np.ndarray, labels: list[str],
                    title: str) -> go.Figure:
    """Colour strips d_head wide: one row for q, below it one row per key."""
    bound = _bound(np.concatenate([q[None, :], keys]))
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.04,
                        row_heights=[1, max(len(keys), 1)])
    common = dict(colorscale=VECTOR_COLORSCALE, zmin=-bound, zmax=bound)
    fig.add_trace(go.Heatmap(z=q[None, :], showscale=False, hovertemplate="q_%{x} = %{z:.3f}<extra></extra>",
                             **common), row=1, col=1)
    fig.add_trace(go.Heatmap(z=keys, colorbar=dict(title=dict(text="value")),
                             hovertemplate="key %{y:d}: k_%{x} = %{z:.3f}<extra></extra>", **common), row=2, col=1)
    fig.update_yaxes(tickvals=[0], ticktext=["q"], showgrid=False, row=1, col=1)
    fig.update_yaxes(autorange="reversed", showgrid=False, title_text="key", row=2, col=1,
                     **_key_axis(labels, hidden))
    fig.update_xaxes(title_text="dimension i of d_head", showgrid=False, row=2, col=1)
    fig.update_layout(title_text=title, height=min(max(16 * len(keys) + 160, 260), 900),
                      margin=dict(l=10, r=10, t=50, b=10))
    return fig.update_xaxes(automargin=True).update_yaxes(automargin=True)


def _products_figure(q: np.ndarray, keys: np.ndarray, products: np.ndarray, hidden: np.ndarray,
                     labels: list[str], title: str) -> go.Figure:
    """Heatmap of q_i·k_ji, keys × dimensions [n, d_head]; hover gives i, q_i, k_i and the product."""
    parts = np.stack([np.broadcast_to(q[None, :], keys.shape), keys], axis=-1)  # [n, d_head, 2]
    fig = go.Figure(go.Heatmap(
        z=products, customdata=parts.astype(np.float32), colorscale=VECTOR_COLORSCALE,
        zmin=-_bound(products), zmax=_bound(products), colorbar=dict(title=dict(text="q_i·k_i")),
        hovertemplate=("key %{y:d} · i = %{x}<br>q_i = %{customdata[0]:.3f}<br>k_i = %{customdata[1]:.3f}"
                       "<br>q_i·k_i = %{z:.3f}<extra></extra>"),
    ))
    fig.update_xaxes(title_text="dimension i of d_head", showgrid=False)
    fig.update_yaxes(title_text="key", autorange="reversed", showgrid=False, **_key_axis(labels, hidden))
    fig.update_layout(title_text=title, height=min(max(16 * len(keys) + 140, 260), 900),
                      margin=dict(l=10, r=10, t=50, b=10))
    return fig.update_xaxes(automargin=True).update_yaxes(automargin=True)
