"""Tab "Query · key": one query token against every key of the chosen head: scores, vectors, products."""

from __future__ import annotations

import streamlit as st

from components import content
from components.figures.qk import qk_figures
from components.labels import markdown_literal, token_text
from components.views.context import ViewContext
from components.widgets import token_select
from engine.arrays import readonly


def render(ctx: ViewContext) -> None:
    trace, layer, head = ctx.trace, ctx.layer, ctx.head
    d_head = trace.config.d_head
    query = token_select("Query token (attending from)", trace.tokens, key="qk_query")
    q = readonly(trace["q", layer, head][query])  # [d_head]
    keys = readonly(trace["k", layer, head])  # [n, d_head]
    masked = trace.masked(slice(query, query + 1), layer)[0].cpu().numpy()  # [n] bool
    weights = readonly(trace.pattern_rows(layer, slice(query, query + 1), head)[0])  # [n]
    top = int(weights.argmax())
    st.markdown(markdown_literal(
        f"Layer {layer}, head {head}: the query of “{token_text(trace.tokens[query])}” matches the key of "
        f"“{token_text(trace.tokens[top])}” best (weight {weights[top]:.3f}). "
        f"Each score is Σᵢ qᵢ·kᵢ / √{d_head}."))
    if note := content.attention_note(trace.config, layer):
        st.info(note + " The bars below are q·k / √d_head, before this model's own scaling.")
    figs = qk_figures(q, keys, trace.tokens, query, masked=masked, d_head=d_head)
    for name in ("scores", "vectors", "products"):
        ctx.chart(figs[name], key=f"qk_{name}")
