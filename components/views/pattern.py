"""Tab "Attention pattern": the chosen head's pattern beside its pre-softmax scores, a zoom window for long texts,
and the next-token prediction. In place of α it can show value-weighted attention (this head's, or the whole
layer's) or α without the first key; that choice is kept in the link."""

from __future__ import annotations

import streamlit as st

import engine
from components import content, state
from components.derived import per_trace
from components.figures.matrix import HOVER_BLOCKS, MAX_IMAGE_PX, Pooled
from components.figures.pattern import pattern_csv, pattern_figure, scores_figure
from components.labels import markdown_literal
from components.state import Field
from components.views._predictions import render_predictions
from components.views.context import ViewContext
from engine.analysis import pooling
from engine.arrays import readonly

ZOOM_ABOVE = 128  # longer patterns are drawn as images; a window of them can be read token by token
CSV_MAX_TOKENS = 1024  # a longer pattern's CSV would be hundreds of MB: the zoom window offers its own
LAYER_WEIGHTED_MAX = 2048  # the whole layer's value-weighted attention costs n² · n_heads² per layer

SHOW = {"alpha": "attention α", "head": "value-weighted: this head", "layer": "value-weighted: whole layer",
        "no_first": "α without the first key"}
MATRIX: dict[str, pooling.Matrix] = {"alpha": "pattern", "head": "head_weighted", "layer": "layer_weighted",
                                     "no_first": "without_first"}
ROWS = {"raw": "as they are", "normalised": "each row normalised to sum 1"}
SHOWN = Field("pattern.show", "alpha", choices=tuple(SHOW))
ROW_SCALE = Field("pattern.rows", "raw", choices=tuple(ROWS))
FIELDS = (SHOWN, ROW_SCALE)


def pooled(trace: engine.Trace, name: pooling.Matrix, layer: int, head: int, normalise: bool = False) -> Pooled:
    """A long text's matrix of one head, reduced block by block by the engine (never n × n at once)."""
    p = pooling.max_pooled(trace, name, layer, head, (MAX_IMAGE_PX, HOVER_BLOCKS), normalise)
    return Pooled(p.n, *p.maps, p.low, p.high)


def choose_matrix(ctx: ViewContext) -> tuple[str, bool]:
    """What the left figure shows (a key of SHOW) and whether value-weighted rows are normalised."""
    show = st.radio("Show", SHOWN.choices, index=SHOWN.choices.index(ctx.state.value(SHOWN)), format_func=SHOW.get,
                    horizontal=True, key="pattern_show")
    state.set_value(SHOWN, show)
    rows = ctx.state.value(ROW_SCALE)
    if show in ("head", "layer"):
        rows = st.radio("Rows of the value-weighted attention", ROW_SCALE.choices, format_func=ROWS.get,
                        index=ROW_SCALE.choices.index(rows), horizontal=True, key="pattern_rows")
        state.set_value(ROW_SCALE, rows)
    if show == "layer" and ctx.trace.n_tokens > LAYER_WEIGHTED_MAX:
        st.info(f"The whole layer's value-weighted attention is offered up to {LAYER_WEIGHTED_MAX:,} tokens (its cost "
                f"grows with n² · heads²); this text has {ctx.trace.n_tokens:,}. Showing this head's instead.")
        show = "head"
    return show, show in ("head", "layer") and rows == "normalised"


def describe(show: str, normalise: bool, layer: int, head: int) -> tuple[str, str, str]:
    """(title, caption, value name) of the left figure."""
    rows = ("each row divided by its sum, so it sums to 1 like α" if normalise
            else "rows as they are, in the units of the residual stream")
    if show == "head":
        return (f"Value-weighted attention · layer {layer}, head {head}",
                f"‖α_ij · v_j W_O[h]‖: the size of what key j adds to query i through this head (Kobayashi et al., "
                f"2020); {rows}. " + content.SINK_NOTE, "share" if normalise else "‖α v W_O‖")
    if show == "layer":
        return (f"Value-weighted attention · layer {layer}, all heads",
                f"‖Σ_h α_ij · v_j W_O[h]‖: the size of what key j adds to query i through the whole layer, every "
                f"head's contribution summed (a switched-off head adds nothing); {rows}. " + content.SINK_NOTE,
                "share" if normalise else "‖Σ α v W_O‖")
    if show == "no_first":
        return (f"Attention pattern without the first key · layer {layer}, head {head}",
                "α with the first key left out and each row renormalised over the other keys: not what the model "
                "computes, but where the rest of the attention goes when the first token takes most of it. A query "
                "with no other key (query 0 under a causal mask) stays 0.", "weight")
    return f"Attention pattern · layer {layer}, head {head}", "softmax over keys of the masked scores", "weight"


def render(ctx: ViewContext) -> None:
    layer, head, trace, layout = ctx.layer, ctx.head, ctx.trace, ctx.state.layout
    tokens, n = trace.tokens, trace.n_tokens
    show, normalise = choose_matrix(ctx)
    matrix = MATRIX[show]
    if n > ZOOM_ABOVE:
        shown = per_trace(pooled, trace, matrix, layer, head, normalise)
        scores = per_trace(pooled, trace, "scores", layer, head)
        masked = None
    else:
        shown = pooling.window(trace, matrix, layer, head, 0, n, normalise)  # [n, n]
        scores = readonly(trace["scores", layer, head])  # [n, n]
        masked = trace.masked(layer=layer).cpu().numpy()  # [n, n] bool, True where a query may not see a key
    if note := content.attention_note(trace.config, layer):
        st.caption(note)
    if ctx.head_off:
        st.warning(f"Head {layer}.{head} is switched off: its pattern is computed but it adds nothing (Δe = 0).")
    title, caption, value_name = describe(show, normalise, layer, head)
    on_unit_scale = not (show in ("head", "layer") and not normalise)  # α and normalised rows lie in 0..1
    left, right = st.columns(2)
    with left:
        st.subheader(title)
        if show == "alpha":
            caption += "; " + ("each row sums to 1" if layout == "query_rows"
                               else "each column sums to 1 (the notes' layout)")
        st.caption(markdown_literal(caption))
        own_scale = on_unit_scale and st.toggle(
            "colour scale up to this head's largest weight (default: 0 to 1 for every head)", key="pattern_own_scale")
        ctx.chart(pattern_figure(shown, tokens, layout=layout, scores=None if n > ZOOM_ABOVE else scores, title="",
                                 zmax=1.0 if on_unit_scale and not own_scale else None, value_name=value_name),
                  key="pattern_fig")
        if n <= CSV_MAX_TOKENS:
            again = ctx.trace_later  # built on click; the page keeps no reference to the run meanwhile
            st.download_button("Download what is shown (CSV)", lambda: pattern_csv(
                pooling.window(again(), matrix, layer, head, 0, n, normalise), tokens, layout),
                file_name=f"{matrix}_layer{layer}_head{head}.csv", mime="text/csv")
    with right:
        st.subheader("Scores q·k / √d_head, before softmax")
        st.caption("masked cells (a key after its query, under a causal mask) become −∞ and get weight 0")
        ctx.chart(scores_figure(scores, masked, tokens, layout=layout), key="scores_fig")
    if n > ZOOM_ABOVE:
        render_zoom(ctx, show, normalise, value_name, 1.0 if on_unit_scale else None)
    render_predictions(ctx, key="pattern_tab", choose_position=True)


def render_zoom(ctx: ViewContext, show: str, normalise: bool, value_name: str, zmax: float | None) -> None:
    """A window of at most ZOOM_ABOVE tokens of a long text's matrix, drawn cell by cell with every label."""
    matrix = MATRIX[show]
    trace, layer, head, layout = ctx.trace, ctx.layer, ctx.head, ctx.state.layout
    n = trace.n_tokens
    st.subheader("Zoom: read a window token by token")
    start, end = st.slider("token window (query and key positions)", 0, n - 1,
                           value=(max(0, n - 64), n - 1), key="zoom_window")
    if end - start + 1 > ZOOM_ABOVE:
        end = start + ZOOM_ABOVE - 1
        st.caption(f"A window shows at most {ZOOM_ABOVE} tokens: showing {start}–{end}.")
    tokens = trace.tokens[start:end + 1]
    shown = pooling.window(trace, matrix, layer, head, start, end + 1, normalise)  # [w, w]
    scores = pooling.window(trace, "scores", layer, head, start, end + 1)  # [w, w], before masking
    masked = trace.masked(slice(start, end + 1), layer)[:, start:end + 1].cpu().numpy()  # [w, w]
    left, right = st.columns(2)
    with left:
        name = "pattern" if show == "alpha" else SHOW[show]
        ctx.chart(pattern_figure(shown, tokens, layout=layout, scores=scores, offset=start, zmax=zmax,
                                 title=f"{name}, tokens {start}–{end}", value_name=value_name),
                  key="zoom_pattern_fig")
        st.download_button("Download this window (CSV)", lambda: pattern_csv(shown, tokens, layout),
                           file_name=f"{matrix}_layer{layer}_head{head}_tokens{start}-{end}.csv", mime="text/csv")
    with right:
        ctx.chart(scores_figure(scores, masked, tokens, layout=layout, offset=start,
                                title=f"scores, tokens {start}–{end}"), key="zoom_scores_fig")
    st.caption("Rows of a window need not sum to 1: a query also attends to keys outside the window.")
