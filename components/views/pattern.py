"""Tab "Attention pattern": the chosen head's pattern beside its pre-softmax scores, a zoom window for long texts,
and the next-token prediction."""

from __future__ import annotations

import streamlit as st

import engine
from components.derived import per_trace
from components.figures.matrix import HOVER_BLOCKS, MAX_IMAGE_PX, Pooled
from components.figures.pattern import pattern_csv, pattern_figure, scores_figure
from components.views._predictions import render_predictions
from components.views.context import ViewContext
from engine.analysis import pooling
from engine.arrays import readonly

ZOOM_ABOVE = 128  # longer patterns are drawn as images; a window of them can be read token by token
CSV_MAX_TOKENS = 1024  # a longer pattern's CSV would be hundreds of MB: the zoom window offers its own


def pooled(trace: engine.Trace, name: str, layer: int, head: int) -> Pooled:
    """A long text's pattern or scores of one head, reduced block by block by the engine (never n × n at once)."""
    p = pooling.max_pooled(trace, name, layer, head, (MAX_IMAGE_PX, HOVER_BLOCKS))
    return Pooled(p.n, *p.maps, p.low, p.high)


def render(ctx: ViewContext) -> None:
    layer, head, trace, layout = ctx.layer, ctx.head, ctx.trace, ctx.state.layout
    tokens, n = trace.tokens, trace.n_tokens
    if n > ZOOM_ABOVE:
        pattern, scores = (per_trace(pooled, trace, name, layer, head) for name in ("pattern", "scores"))
        masked = None
    else:
        pattern = readonly(trace["pattern", layer, head])  # [n, n]
        scores = readonly(trace["scores", layer, head])  # [n, n]
        masked = trace.masked().cpu().numpy()  # [n, n] bool, True where a query may not see a key
    if ctx.head_off:
        st.warning(f"Head {layer}.{head} is switched off: its pattern is computed but it adds nothing (Δe = 0).")
    left, right = st.columns(2)
    with left:
        st.subheader(f"Attention pattern · layer {layer}, head {head}")
        sums = "each row sums to 1" if layout == "query_rows" else "each column sums to 1 (the notes' layout)"
        st.caption(f"softmax over keys of the masked scores; {sums}")
        own_scale = st.toggle("colour scale up to this head's largest weight (default: 0 to 1 for every head)",
                              key="pattern_own_scale")
        ctx.chart(pattern_figure(pattern, tokens, layout=layout, scores=None if n > ZOOM_ABOVE else scores,
                                 title="", zmax=None if own_scale else 1.0), key="pattern_fig")
        if n <= CSV_MAX_TOKENS:
            st.download_button("Download this pattern (CSV)", lambda: pattern_csv(
                readonly(trace["pattern", layer, head]), tokens, layout),  # built on click
                file_name=f"pattern_layer{layer}_head{head}.csv", mime="text/csv")
    with right:
        st.subheader("Scores q·k / √d_head, before softmax")
        st.caption("masked cells (a key after its query, under a causal mask) become −∞ and get weight 0")
        ctx.chart(scores_figure(scores, masked, tokens, layout=layout), key="scores_fig")
    if n > ZOOM_ABOVE:
        render_zoom(ctx)
    render_predictions(ctx, key="pattern_tab", choose_position=True)


def render_zoom(ctx: ViewContext) -> None:
    """A window of at most ZOOM_ABOVE tokens of a long pattern, drawn cell by cell with every label."""
    trace, layer, head, layout = ctx.trace, ctx.layer, ctx.head, ctx.state.layout
    n = trace.n_tokens
    st.subheader("Zoom: read a window token by token")
    start, end = st.slider("token window (query and key positions)", 0, n - 1,
                           value=(max(0, n - 64), n - 1), key="zoom_window")
    if end - start + 1 > ZOOM_ABOVE:
        end = start + ZOOM_ABOVE - 1
        st.caption(f"A window shows at most {ZOOM_ABOVE} tokens: showing {start}–{end}.")
    tokens = trace.tokens[start:end + 1]
    pattern = pooling.window(trace, "pattern", layer, head, start, end + 1)  # [w, w]
    scores = pooling.window(trace, "scores", layer, head, start, end + 1)  # [w, w], before masking
    masked = trace.masked(slice(start, end + 1))[:, start:end + 1].cpu().numpy()  # [w, w]
    left, right = st.columns(2)
    with left:
        ctx.chart(pattern_figure(pattern, tokens, layout=layout, scores=scores, offset=start,
                                 title=f"pattern, tokens {start}–{end}"), key="zoom_pattern_fig")
        st.download_button("Download this window of the pattern (CSV)", lambda: pattern_csv(pattern, tokens, layout),
                           file_name=f"pattern_layer{layer}_head{head}_tokens{start}-{end}.csv", mime="text/csv")
    with right:
        ctx.chart(scores_figure(scores, masked, tokens, layout=layout, offset=start,
                                title=f"scores, tokens {start}–{end}"), key="zoom_scores_fig")
    st.caption("Rows of a window need not sum to 1: a query also attends to keys outside the window.")
