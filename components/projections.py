"""Vector projections (PCA, 2D or 3D): queries and keys of one head, e -> e + Δe, a token's path through layers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import engine
from engine.analysis import projections as analysis

from . import content
from .deltas import last_word_token, token_select
from .labels import markdown_literal, token_labels, token_text
from .plot import chart

MAX_TEXT = 60  # more tokens than this: no text labels on the points, only hover
MAX_ARROWS = 150  # more tokens than this: plain segments instead of arrow annotations
WHAT = ("queries and keys of one head", "each token before → after this layer's attention",
        "a token's path through the layers")


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


def _layout(basis: analysis.PCA, dims: int, title: str) -> dict:
    """Figure layout (a dict for `go.Figure(layout=...)`): axes named by principal component, 2D or 3D."""
    names = [f"PC{i + 1} ({basis.explained[i]:.0%})" for i in range(dims)]
    if dims == 3:
        axes = dict(scene=dict(xaxis=dict(title=dict(text=names[0])), yaxis=dict(title=dict(text=names[1])),
                               zaxis=dict(title=dict(text=names[2]))))
    else:
        axes = dict(xaxis=dict(title=dict(text=names[0])),
                    yaxis=dict(title=dict(text=names[1]), scaleanchor="x", scaleratio=1))
    return dict(**axes, title=dict(text=title), height=560, margin=dict(l=10, r=10, t=50, b=10),
                legend=dict(x=0, y=1))


def qk_figure(p: analysis.QKProjection, tokens: Sequence[str], query: int, n_top: int, dims: int = 2) -> go.Figure:
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
    top = p.top_keys(query, n_top)
    for rank, j in enumerate(top):
        w = float(p.pattern[query, j])
        traces.append(_scatter(np.stack([p.queries[query], p.keys[j]]), dims, mode="lines", showlegend=rank == 0,
                               name=f"query {query} → its top keys", legendgroup="top",
                               line=dict(color="crimson", width=1 + 6 * w),
                               hovertext=f"weight {w:.3f}: query {query} → key {j}: {labels[j]}", hoverinfo="text"))
    traces.append(_scatter(p.queries[query : query + 1], dims, mode="markers", name=f"query {query}",
                           marker=dict(color="crimson", size=14 if dims == 2 else 8, symbol="circle-open")))
    return go.Figure(data=traces, layout=_layout(p.basis, dims, f"Queries and keys of {where}, one shared PCA basis"))


def delta_figure(p: analysis.DeltaProjection, tokens: Sequence[str], dims: int = 2) -> go.Figure:
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


def path_figure(p: analysis.PathProjection, tokens: Sequence[str], dims: int = 2) -> go.Figure:
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


def basis_table(basis: analysis.PCA, dims: int) -> pd.DataFrame:
    """Per component: explained variance and the input dimensions with the largest loadings."""
    rows = []
    for i in range(dims):
        c = basis.components[i]
        top = np.argsort(-np.abs(c))[:5]
        rows.append({"component": f"PC{i + 1}", "explained variance": f"{basis.explained[i]:.1%}",
                     "largest loadings (dimension: weight)": ", ".join(f"{d}: {c[d]:+.2f}" for d in top)})
    return pd.DataFrame(rows)


def render(model: engine.Model, trace: engine.Trace, run: Callable[[str, bool | None], engine.Trace], *,
           layer: int, head: int, key: str) -> None:
    """The projections tab: pick what to project, 2D or 3D; the basis and its explained variance below."""
    tokens = trace.tokens
    st.subheader("Vector projections")
    what = st.radio("Project", WHAT, key=f"{key}_what", horizontal=True)
    dims = 3 if st.radio("View", ("2D", "3D"), key=f"{key}_dims", horizontal=True) == "3D" else 2
    if what == WHAT[0]:
        query = token_select("Query token", tokens, key=f"{key}_query", default=last_word_token(model, trace))
        n_top = st.slider("Lines to the top keys", 1, min(5, len(tokens)), min(3, len(tokens)), key=f"{key}_top")
        p = analysis.qk_projection(trace, layer, head, k=3)
        st.caption(f"Query and key vectors of layer {layer}, head {head} ({model.config.d_head} dimensions, after "
                   "rotary position encoding where the model uses it) projected on one PCA basis fitted to both, so "
                   "a key close in direction to a query answers it: their dot product sets the attention weight.")
        chart(qk_figure(p, tokens, query, n_top, dims), key=f"{key}_qk_fig")
        points = f"{2 * len(tokens)} vectors (queries and keys) of dimension {model.config.d_head}"
    elif what == WHAT[1]:
        options = ["all heads", *[f"head {h}" for h in range(model.config.n_heads)]]
        who = st.selectbox("Δe of", options, key=f"{key}_who")
        one = None if who == "all heads" else int(who.split()[1])
        skip = st.checkbox("Fit the basis without the first token (in many models its vector is huge and would "
                           "fill the picture)", value=len(tokens) > 2, key=f"{key}_skip")
        p = analysis.delta_projection(trace, layer, one, k=3, skip=[0] if skip and len(tokens) > 2 else [])
        if note := content.post_norm_note(trace.config):
            st.info(note)
        chart(delta_figure(p, tokens, dims), key=f"{key}_delta_fig")
        points = f"{2 * len(tokens)} vectors (e and e + Δe) of dimension {model.config.d_model}"
    else:
        default, state = [last_word_token(model, trace)], f"{key}_path_tokens"
        if state in st.session_state:  # keep only positions the current text still has
            st.session_state[state] = [t for t in st.session_state[state] if 0 <= t < len(tokens)]
        chosen = st.multiselect("Tokens", list(range(len(tokens))), default=None if state in st.session_state
                                else default, key=state, format_func=lambda i: f"{i}: {token_text(tokens[i])}")
        chosen = chosen or default
        p = analysis.layer_path(trace, chosen, k=3)
        chart(path_figure(p, tokens, dims), key=f"{key}_path_fig")
        points = (f"{len(chosen) * (model.config.n_layers + 1)} vectors (each chosen token at the embedding and "
                  f"after each of {model.config.n_layers} blocks) of dimension {model.config.d_model}")
    st.caption(markdown_literal(f"Basis: principal components of {points}, centred; each component's largest "
                                "loading is made positive so the picture is reproducible. Hover a point for its "
                                "token, position and layer."))
    st.dataframe(basis_table(p.basis, dims), hide_index=True, key=f"{key}_basis")
