"""Tab "Projections": PCA pictures (2D or 3D) of one head's queries and keys, of each token's e -> e + Δe, or of
tokens' paths through the layers; the basis and its explained variance below. The mode and the dimensions are
kept in the link."""

from __future__ import annotations

import streamlit as st

from components import content, state
from components.figures.projections import basis_table, delta_figure, path_figure, qk_figure
from components.labels import markdown_literal
from components.state import Field
from components.views.context import ViewContext
from components.widgets import last_word_token, token_multiselect, token_select
from engine.analysis import projections as analysis

MODES = {"qk": "queries and keys of one head", "delta": "each token before → after this layer's attention",
         "path": "a token's path through the layers"}
MODE = Field("projections.mode", "qk", choices=tuple(MODES))
DIMS = Field("projections.dims", 2, choices=(2, 3))
FIELDS = (MODE, DIMS)


def render(ctx: ViewContext) -> None:
    st.subheader("Vector projections")
    mode = st.radio("Project", MODE.choices, index=MODE.choices.index(ctx.state.value(MODE)), key="projections_what",
                    format_func=MODES.get, horizontal=True)
    dims = st.radio("View", DIMS.choices, index=DIMS.choices.index(ctx.state.value(DIMS)), key="projections_dims",
                    format_func=lambda d: f"{d}D", horizontal=True)
    state.set_value(MODE, mode)
    state.set_value(DIMS, dims)
    basis, points = {"qk": render_qk, "delta": render_delta, "path": render_path}[mode](ctx, dims)
    st.caption(markdown_literal(f"Basis: principal components of {points}, centred; each component's largest "
                                "loading is made positive so the picture is reproducible. Hover a point for its "
                                "token, position and layer."))
    ctx.table(basis_table(basis, dims), hide_index=True, key="projections_basis")


def render_qk(ctx: ViewContext, dims: int) -> tuple[analysis.PCA, str]:
    """Queries and keys of the chosen head in one space; lines from a query to its top keys."""
    tokens, cfg = ctx.trace.tokens, ctx.model.config
    query = token_select("Query token", tokens, key="projections_query", default=last_word_token(ctx.model, ctx.trace))
    n_top = st.slider("Lines to the top keys", 1, min(5, len(tokens)), min(3, len(tokens)), key="projections_top")
    p = analysis.qk_projection(ctx.trace, ctx.layer, ctx.head, query, k=3)
    st.caption(f"Query and key vectors of layer {ctx.layer}, head {ctx.head} ({cfg.d_head} dimensions, after rotary "
               "position encoding where the model uses it) projected on one PCA basis fitted to both, so a key close "
               "in direction to a query answers it: their dot product sets the attention weight.")
    ctx.chart(qk_figure(p, tokens, n_top, dims), key="projections_qk_fig")
    return p.basis, f"{2 * len(tokens)} vectors (queries and keys) of dimension {cfg.d_head}"


def render_delta(ctx: ViewContext, dims: int) -> tuple[analysis.PCA, str]:
    """Each token's embedding before and after the chosen layer's attention (all heads, or one)."""
    tokens, cfg = ctx.trace.tokens, ctx.model.config
    who = st.selectbox("Δe of", list(range(-1, cfg.n_heads)), key="projections_who",
                       format_func=lambda h: "all heads" if h == -1 else f"head {h}")
    skip = st.checkbox("Fit the basis without the first token (in many models its vector is huge and would "
                       "fill the picture)", value=len(tokens) > 2, key="projections_skip")
    p = analysis.delta_projection(ctx.trace, ctx.layer, None if who == -1 else who, k=3,
                                  skip=[0] if skip and len(tokens) > 2 else [])
    if note := content.post_norm_note(cfg, ctx.model.weights.blocks[ctx.layer].ln1_post is not None):
        st.info(note)
    ctx.chart(delta_figure(p, tokens, dims), key="projections_delta_fig")
    return p.basis, f"{2 * len(tokens)} vectors (e and e + Δe) of dimension {cfg.d_model}"


def render_path(ctx: ViewContext, dims: int) -> tuple[analysis.PCA, str]:
    """Chosen tokens' residual vectors at the embedding and after every block."""
    tokens, cfg = ctx.trace.tokens, ctx.model.config
    default = [last_word_token(ctx.model, ctx.trace)]
    chosen = token_multiselect("Tokens", tokens, key="projections_path_tokens", default=default) or default
    p = analysis.layer_path(ctx.trace, chosen, k=3)
    ctx.chart(path_figure(p, tokens, dims), key="projections_path_fig")
    return p.basis, (f"{len(chosen) * (cfg.n_layers + 1)} vectors (each chosen token at the embedding and after each "
                     f"of {cfg.n_layers} blocks) of dimension {cfg.d_model}")
