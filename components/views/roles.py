"""Tab "Head roles": what each head does on a probe of random tokens repeated twice (five role scores as
layers × heads maps), the top heads of a role with their patterns and one click to switch them off, and the
in-context learning check beside them. Two smaller sections: first-token sinks and attention rollout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from components import content, probes, state
from components.derived import per_trace
from components.figures.roles import loss_figure, loss_table, role_maps_figure, thumbnail_figure, top_heads_table
from components.labels import markdown_literal
from components.state import Field
from components.views import _rollout, _sinks
from components.views.context import ViewContext
from engine import EngineError, Trace
from engine.analysis.roles import ROLES, HeadRoles
from engine.analysis.senses import top_heads

SECTIONS = {"roles": "Head roles and in-context learning", "sinks": "First-token sinks",
            "rollout": "Attention across layers (rollout)"}
SECTION = Field("roles.section", "roles", choices=tuple(SECTIONS))
ROLE = Field("roles.role", "induction", choices=ROLES)
TOP = Field("roles.top", 3, choices=tuple(range(1, 11)))
FIELDS = (SECTION, ROLE, TOP)
WEAK = 0.2  # a best score below this: the model has no head of that role


def render(ctx: ViewContext) -> None:
    section = st.radio("Show", SECTION.choices, index=SECTION.choices.index(ctx.state.value(SECTION)),
                       format_func=SECTIONS.get, horizontal=True, key="roles_section")
    state.set_value(SECTION, section)
    {"roles": render_roles, "sinks": _sinks.render, "rollout": _rollout.render}[section](ctx)


def render_roles(ctx: ViewContext) -> None:
    cfg, s = ctx.model.config, ctx.state
    try:
        got = probes.roles(ctx.model, s.causal, s.heads_off, ctx.settings)
    except EngineError as err:  # e.g. a model whose context is shorter than the probe
        st.info(markdown_literal(f"Head roles are not available for {cfg.name}: {err}"))
        return
    probe = got.probe
    n_lead = probe.first.start
    st.subheader("What each head does")
    st.caption(markdown_literal(
        f"The probe: {probe.first.stop - probe.first.start} random ordinary tokens (seed 0), then the same tokens "
        f"again{f', after {n_lead} special token(s)' if n_lead else ''}: {len(probe.token_ids)} tokens in all. "
        f"A head's score for a role is the mean, over the query positions that have target keys, of the attention "
        f"it puts on them. Scores come from this probe (not from the sentence), under the sidebar's mask "
        f"({'causal' if got.trace.causal else 'none'}) and with {len(s.heads_off)} head(s) switched off."))
    if not got.trace.causal:
        encoder = ("A bidirectional encoder has no reason to grow induction heads (they serve next-token "
                   f"prediction): {cfg.name}'s best induction score is {np.nanmax(got['induction']):.2f}."
                   if not cfg.causal else "")
        st.info(markdown_literal(
            f"{cfg.name} runs bidirectionally here: every token also sees the tokens after it. The roles still look "
            "backwards: “previous token” is the key just before the query, and duplicate and induction count only "
            "earlier copies, so a head that attends to a later copy of its token scores nothing for it. " + encoder))
    with st.expander("How each role is defined"):
        ctx.table(definitions(), hide_index=True, key="roles_definitions")
    titles = {role: content.ROLE_LABELS[role] + ("" if got.defined[role] else " (no position has a target)")
              for role in ROLES}
    ctx.chart(role_maps_figure(got.scores, titles), key="roles_maps")
    render_top_heads(ctx, got)


def definitions() -> pd.DataFrame:
    """The role definitions as a table (role, target keys of query i)."""
    return pd.DataFrame({"role": [content.ROLE_LABELS[r] for r in ROLES],
                         "target keys of query i": [content.ROLE_TARGETS[r] for r in ROLES]})


def render_top_heads(ctx: ViewContext, got: HeadRoles) -> None:
    """The top heads of a role (ranked with every head on), their patterns on the probe, the switch, and the
    in-context learning check beside them."""
    s = ctx.state
    reference = probes.reference_roles(ctx.model, ctx.settings)
    st.subheader("The top heads of a role")
    left, right = st.columns([1, 1])
    role = left.selectbox("Role", ROLE.choices, index=ROLE.choices.index(s.value(ROLE)), key="roles_role",
                          format_func=content.ROLE_LABELS.get)
    count = right.select_slider("How many", TOP.choices, value=s.value(TOP), key="roles_top")
    state.set_value(ROLE, role)
    state.set_value(TOP, count)
    ranked = top_heads(reference[role], count)
    top = [(layer, head) for layer, head, _ in ranked]
    if ranked and not ranked[0][2] >= WEAK:
        st.info(markdown_literal(f"No head of {ctx.model.config.name} puts even {WEAK:.0%} of its attention where "
                                 f"the {content.ROLE_LABELS[role]} role says (best: {ranked[0][2]:.2f}): it has no "
                                 "such heads. The heads below are only the least unlike it."))
    thumbs = st.columns(max(len(top), 3))
    for i, (column, (layer, head)) in enumerate(zip(thumbs, top, strict=False)):
        with column:
            off = " (off)" if (layer, head) in s.heads_off else ""
            title = f"layer {layer}, head {head}{off} · {got[role][layer, head]:.2f}"
            ctx.chart(per_trace(thumbnail, got.trace, layer, head, title, got.probe.second.start),
                      key=f"roles_thumb_{i}")
    st.caption("Each thumbnail is that head's pattern on the probe (query rows, key columns; dotted lines: where "
               "the second copy starts), in the run with your switches. Heads are ranked with every head on, so "
               "the list stays put when you switch them off.")
    left, right = st.columns([2, 3])
    with left:
        render_switch(ctx, top)
        ctx.table(top_heads_table(top, reference[role], got[role], [h in s.heads_off for h in top]),
                  hide_index=True, key="roles_top_table")
    with right:
        render_icl(ctx)


def thumbnail(trace: Trace, layer: int, head: int, title: str, second: int) -> go.Figure:
    """A top head's pattern on the probe as a small figure (cached per probe run)."""
    return thumbnail_figure(trace["pattern", layer, head].numpy(), trace.tokens, title, second)


def render_switch(ctx: ViewContext, top: list[tuple[int, int]]) -> None:
    """One click switches the top heads off (or back on) in every tab."""
    off, chosen = ctx.state.heads_off, frozenset(top)
    names = ", ".join(f"{layer}.{head}" for layer, head in top)
    st.button(f"Switch these {len(top)} heads off ({names})", key="roles_switch_off", disabled=chosen <= off,
              on_click=state.update, kwargs={"heads_off": off | chosen}, type="primary")
    st.button("Switch them back on", key="roles_switch_on", disabled=not chosen & off,
              on_click=state.update, kwargs={"heads_off": off - chosen})
    st.caption(f"Applies to every tab (it is the sidebar's head switches); {len(off)} head(s) off now. The "
               "Interventions tab switches any head.")


def render_icl(ctx: ViewContext) -> None:
    """Next-token loss on the probe's two copies, with the switches and with every head on."""
    cfg = ctx.model.config
    st.markdown("**In-context learning check**")
    if not cfg.has_lm_head or not cfg.causal:
        st.info(markdown_literal(
            f"{cfg.name} is not a causal language model: it has no next-token prediction to measure a loss with, "
            "and a bidirectional model sees the token it would predict. The check needs a causal LM such as "
            "SmolLM2."))
        return
    try:
        check = probes.icl_check(ctx.model, ctx.state.heads_off, ctx.settings)
    except EngineError as err:
        st.info(markdown_literal(f"The in-context learning check is not available here: {err}"))
        return
    probe, changed = probes.reference_roles(ctx.model, ctx.settings).probe, bool(ctx.state.heads_off)
    tokens = ctx.model.readable(probe.token_ids)
    st.caption("Next-token loss of each probe token (always with the causal mask). The second copy repeats the "
               "first, so a model that copies from context predicts it far better; induction heads do that "
               "copying. Switch them off and the second copy's loss rises.")
    ctx.chart(loss_figure(check.current.per_token, check.unmodified.per_token, tokens, probe.first, probe.second,
                          changed), key="roles_icl_fig")
    runs = [check.unmodified] + ([check.current] if changed else [])
    names = ["every head on"] + (["with your switches"] if changed else [])
    ctx.table(loss_table([r.first for r in runs], [r.second for r in runs], names), hide_index=True,
              key="roles_icl_table")
    if changed:
        rise = check.current.second - check.unmodified.second
        st.metric("second copy, mean loss", f"{check.current.second:.2f} nats", delta=f"{rise:+.2f} nats",
                  delta_color="inverse", delta_description="against every head on")
    else:
        st.caption(f"Every head is on: second copy {check.unmodified.second:.2f} nats against "
                   f"{check.unmodified.first:.2f} on the first.")
