"""Section "First-token sinks" of the Head roles tab: each head's share of attention on the first token by weight
α, beside its value-weighted share (what that attention actually adds). Not a tab itself."""

from __future__ import annotations

import streamlit as st

from components import content
from components.derived import per_trace
from components.figures.sinks import share_map_figure, share_scatter_figure
from components.labels import markdown_literal
from components.views.context import ViewContext
from components.widgets import on_request
from engine.analysis.sinks import first_token_shares

AUTO_TOKENS = 256  # one pass over every head's pattern and values: ~5 s at 1,000 tokens on two CPU cores


def render(ctx: ViewContext) -> None:
    trace = ctx.trace
    st.subheader("Attention sinks: how much the first token takes, and how little it gives")
    st.caption(markdown_literal(content.SINK_NOTE))
    if not on_request(trace.n_tokens, AUTO_TOKENS, "roles_sinks_compute", "the first-token shares"):
        return
    shares = per_trace(first_token_shares, trace)
    left, right = st.columns(2)
    with left:
        ctx.chart(share_map_figure(shares.raw, "share of α on the first token"), key="roles_sink_raw")
    with right:
        ctx.chart(share_map_figure(shares.weighted, "value-weighted share on the first token"),
                  key="roles_sink_weighted")
    st.caption(f"On the sentence in the sidebar ({trace.n_tokens} tokens), with its mask and switches; per head, "
               "the mean over query rows of α_i0 (left) and of α_i0 ‖v_0 W_O‖ / Σ_j α_ij ‖v_j W_O‖ (right). "
               "Switched-off heads add nothing and are left blank. The pattern tab can show any head with the first "
               "key left out.")
    ctx.chart(share_scatter_figure(shares.raw, shares.weighted), key="roles_sink_scatter")
    st.caption("One point per head: below the diagonal, a head looks at the first token more than it takes from it.")
