"""Section "Attention across layers" of the Head roles tab: attention rollout from a chosen token back to the
input tokens, raw and value-weighted, as layers × tokens maps. Not a tab itself."""

from __future__ import annotations

import streamlit as st

from components.derived import per_trace
from components.figures.rollout import rollout_figure
from components.labels import markdown_literal, token_text
from components.views.context import ViewContext
from components.widgets import last_word_token, on_request, token_select
from engine.analysis.rollout import rollout_from

AUTO_POSITIONS = 256  # the rollout costs n_layers · n³: ~7 s (raw) and ~26 s (value-weighted) at 900 tokens
MAX_POSITIONS = 1024

NOTE = ("Attention rollout (Abnar & Zuidema, 2020) is an approximation, not what the model computes. Each layer's "
        "mixing of positions is taken to be Â = 0.5 · A + 0.5 · I, with A the layer's attention averaged over its "
        "heads (switched-off heads left out) and the identity I standing for the residual connection, each row "
        "renormalised to sum 1; the rollout after layer l is the product Â_l ··· Â_1 · Â_0. Its row for the chosen "
        "token says how much of that token's vector after layer l comes from each input token. It ignores the MLPs, "
        "the norms and what the values add. The value-weighted rollout uses the whole layer's value-weighted "
        "attention ‖Σ_h α_ij v_j W_O[h]‖, rows normalised to sum 1, as A.")


def render(ctx: ViewContext) -> None:
    trace = ctx.trace
    st.subheader("Attention across layers: rollout")
    st.caption(markdown_literal(NOTE))
    query = token_select("From token", trace.tokens, key="roles_rollout_token",
                         default=last_word_token(ctx.model, trace))
    positions = query + 1 if trace.causal else trace.n_tokens  # a causal run's token sees only those up to it
    if positions > MAX_POSITIONS:
        st.info(f"Rollout is offered over at most {MAX_POSITIONS:,} positions (its cost grows with the cube of "
                f"their number); this token's rollout spans {positions:,}. Choose an earlier token"
                f"{'' if trace.causal else ' or a shorter text'}.")
        return
    if not on_request(positions, AUTO_POSITIONS, "roles_rollout_compute", "the rollout"):
        return
    name = markdown_literal(f"{query}: {token_text(trace.tokens[query])}")
    left, right = st.columns(2)
    with left:
        ctx.chart(rollout_figure(per_trace(rollout_from, trace, query, False), trace.tokens,
                                 "rollout of the head-averaged pattern"), key="roles_rollout_raw")
    with right:
        ctx.chart(rollout_figure(per_trace(rollout_from, trace, query, True), trace.tokens,
                                 "rollout of the value-weighted attention"), key="roles_rollout_weighted")
    st.caption(f"Row l: where token {name}'s vector after layer l comes from; each row sums to 1."
               + (" Under the causal mask the tokens after it get 0." if trace.causal else ""))
