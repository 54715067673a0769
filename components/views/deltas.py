"""Tab "Δe: embedding changes": how far each head moves each token, how the heads add up to the attention output,
a logit lens on one head's Δe, and the head's value map factored into value down and value up."""

from __future__ import annotations

import streamlit as st

from components import content
from components.figures.deltas import (
    delta_dims_figure,
    delta_norm_figure,
    delta_sum_figure,
    lens_tables,
    value_mix_figure,
)
from components.labels import markdown_literal, token_text
from components.views.context import ViewContext
from components.widgets import last_word_token, token_select
from engine.analysis import deltas, lens


def render(ctx: ViewContext) -> None:
    model, trace, layer, tokens = ctx.model, ctx.trace, ctx.layer, ctx.trace.tokens
    st.subheader(f"Δe: what attention adds to each embedding · layer {layer}")
    st.caption("Each head proposes a change Δe to every token's embedding; the block adds the sum of all heads "
               "(plus the output bias b_O) to the residual stream.")
    if note := content.post_norm_note(trace.config, model.weights.blocks[layer].ln1_post is not None):
        st.info(note)
    token = token_select("Token whose Δe to break down", tokens, key="deltas_token",
                         default=last_word_token(model, trace))
    ctx.chart(delta_norm_figure(deltas.head_delta_norms(trace, layer), tokens, layer, token), key="deltas_norms")

    ds = deltas.delta_sum(trace, layer, token)
    st.markdown(markdown_literal(f"Token {token}: “{token_text(tokens[token])}”. ")
                + f"‖attn_out‖ = {ds.attn_norm:.3f}; largest head: {int(ds.head_norms.argmax())} "
                f"(‖Δe‖ = {ds.head_norms.max():.3f}).")
    st.metric("check: max |Σ head_out + b_O − attn_out|", f"{ds.error:.2e}",
              help="Zero up to float32 rounding: the attention output is exactly the sum of the heads' Δe.")
    left, right = st.columns(2)
    with left:
        ctx.chart(delta_sum_figure(ds), key="deltas_sum")
    with right:
        ctx.chart(delta_dims_figure(ds), key="deltas_dims")

    render_lens(ctx, token)
    render_value_map(ctx, token)


def render_lens(ctx: ViewContext, token: int) -> None:
    """Which tokens the chosen head's Δe at `token` pushes up and down, alone and added to the residual."""
    model, trace, layer, head = ctx.model, ctx.trace, ctx.layer, ctx.head
    st.subheader(f"Logit lens on head {layer}.{head}'s Δe")
    k = st.slider("tokens per list", 3, 15, 8, key="deltas_lens_k")
    st.caption(content.lens_note(model.config) + " Δe is read on its own, and added to the residual stream before it.")
    labels = dict(zip(lens.DELTA_LENS_ROWS, ["residual before", f"Δe of head {head}", f"before + Δe of head {head}",
                                              "before + all heads"], strict=True))
    up, down = lens_tables(lens.delta_lens(model, trace, layer, head, token, k), labels)
    st.markdown("**Pushes up most**")
    ctx.table(up, key="deltas_lens_up")
    st.markdown("**Pushes down most**")
    ctx.table(down, key="deltas_lens_down")


def render_value_map(ctx: ViewContext, token: int) -> None:
    """The chosen head's value map, W_V[h] (value down) then W_O[h] (value up), and what it mixes at `token`."""
    model, trace, layer, head, tokens = ctx.model, ctx.trace, ctx.layer, ctx.head, ctx.trace.tokens
    st.subheader(f"Value down, value up · head {layer}.{head}")
    vf = deltas.value_factoring(model, trace, layer, head, token)
    d_model, d_head = vf.value_down_shape
    shared = (f" Key/value sharing: query head {head} reads key/value head {vf.kv_head}, which {vf.kv_group} "
              f"query heads share, so `W_V[{vf.kv_head}]` is stored once for all of them."
              if vf.kv_group > 1 else "")
    st.markdown(
        f"The value map of a head goes from the embedding space and back, factored in two: **value down** "
        f"`W_V[h]` ({d_model} × {d_head} = {vf.value_down_params:,} weights) maps an embedding to a {d_head}-dim "
        f"value vector, **value up** `W_O[h]` ({vf.value_up_shape[0]} × {vf.value_up_shape[1]} = "
        f"{vf.value_up_params:,} weights) maps it back to {d_model} dimensions. A full {d_model} × {d_model} map "
        f"would need {d_model * d_model:,}." + shared)
    st.caption(markdown_literal(
        f"Δe of head {head} at “{token_text(tokens[token])}” = Σ_j w_j · v_j W_O[h]: the value vectors of the "
        f"tokens it attends to, weighted by the pattern. Check: max |Σ − head_out| = {vf.error:.1e}."))
    if ctx.head_off:
        st.warning(f"Head {layer}.{head} is switched off: its weights are shown but it adds nothing (Δe = 0).")
    ctx.chart(value_mix_figure(vf, tokens), key="deltas_values")
