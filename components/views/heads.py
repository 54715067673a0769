"""Tab "All heads": every head's pattern as a thumbnail (click one to focus on it) with a badge naming its strongest
role on the probe (the threshold is kept in the link), and per-head statistics."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import engine
from components import probes, state
from components.derived import per_trace
from components.figures import heads
from components.labels import markdown_literal
from components.state import Field
from components.views.context import ViewContext
from engine.analysis.head_stats import HeadOverview, head_overview
from engine.analysis.roles import ROLES, strongest_roles

BADGE_STEPS = tuple(round(0.05 * k, 2) for k in range(1, 21))  # 0.05 .. 1.0
BADGE_MIN = Field("heads.badge_min", 0.5, choices=BADGE_STEPS)  # the score a head's strongest role must reach
FIELDS = (BADGE_MIN,)


def overview(trace: engine.Trace) -> HeadOverview:
    """Every head's thumbnail and statistics, in one block-by-block pass over the patterns (cached per trace)."""
    return per_trace(head_overview, trace)


def grid_figure(trace: engine.Trace, selected: tuple[int, int], badges: tuple[tuple[int, int, str, float], ...]
                ) -> go.Figure:
    disabled = ~trace.head_mask.numpy()  # bool [n_layers, n_heads]
    return heads.head_grid_figure(overview(trace).thumbnails, selected=selected, disabled=disabled, badges=badges)


def role_badges(ctx: ViewContext, threshold: float) -> tuple[tuple[int, int, str, float], ...]:
    """(layer, head, role, score) of every head whose strongest role on the probe reaches the threshold, under
    the sidebar's mask and switches."""
    scores = probes.roles(ctx.model, ctx.state.causal, ctx.state.heads_off, ctx.settings).scores
    role, score = strongest_roles(scores, threshold)
    return tuple((int(la), int(h), ROLES[role[la, h]], round(float(score[la, h]), 3))
                 for la, h in zip(*(role >= 0).nonzero(), strict=True))


def stat_views(trace: engine.Trace) -> tuple[dict[str, go.Figure], pd.DataFrame]:
    """One small figure per statistic, and the table."""
    stats = overview(trace).stats()
    figures = {name: heads.head_stat_figure(stats[name], title, name) for name, title in heads.STAT_TITLES.items()}
    return figures, heads.head_summary_table(stats)


def select_head_from_grid() -> None:
    """on_select of the head grid: focus the pattern view on the clicked thumbnail."""
    points = (st.session_state.get("head_grid_fig") or {}).get("selection", {}).get("points", [])
    if points:
        layer, head = heads.point_to_head(points[0])
        if layer is not None:
            state.update(layer=layer, head=head)


def render(ctx: ViewContext) -> None:
    cfg, trace = ctx.model.config, ctx.trace
    st.subheader(f"Every head: {cfg.n_layers} layers × {cfg.n_heads} heads")
    st.caption("Each thumbnail is one head's pattern (query rows, key columns). Click one to focus on it; "
               "switched-off heads are crossed out.")
    threshold = st.select_slider("Role badges: a head's strongest role on the probe, where its score reaches",
                                 BADGE_STEPS, value=ctx.state.value(BADGE_MIN), key="heads_badge_min")
    state.set_value(BADGE_MIN, threshold)
    st.caption("Badges: prev = previous token, dup = duplicate token, ind = induction, 1st = first token, self. "
               "Scores come from a probe of random tokens repeated twice, not from this sentence; the Head roles "
               "tab shows them all and says how each is defined.")
    try:
        badges = role_badges(ctx, threshold)
    except engine.EngineError as err:  # e.g. a model whose context is shorter than the probe
        badges = ()
        st.caption(markdown_literal(f"No role badges for this model: {err}"))
    fig = per_trace(grid_figure, trace, (ctx.layer, ctx.head), badges)  # thumbnails cached per trace
    ctx.chart(fig, key="head_grid_fig", on_select=select_head_from_grid, selection_mode="points")
    figures, table = per_trace(stat_views, trace)
    st.subheader("Per-head summary")
    for col, (name, stat_fig) in zip(st.columns(len(figures)), figures.items(), strict=True):
        with col:
            ctx.chart(stat_fig, key=f"head_stat_{name}")
    ctx.table(table, hide_index=True, key="head_summary_table")
