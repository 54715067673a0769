"""Tab "All heads": every head's pattern as a thumbnail (click one to focus on it), and per-head statistics."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import engine
from components import state
from components.derived import per_trace
from components.figures import heads
from components.views.context import ViewContext
from engine.analysis.head_stats import HeadOverview, head_overview


def overview(trace: engine.Trace) -> HeadOverview:
    """Every head's thumbnail and statistics, in one block-by-block pass over the patterns (cached per trace)."""
    return per_trace(head_overview, trace)


def grid_figure(trace: engine.Trace, selected: tuple[int, int]) -> go.Figure:
    disabled = ~trace.head_mask.numpy()  # bool [n_layers, n_heads]
    return heads.head_grid_figure(overview(trace).thumbnails, selected=selected, disabled=disabled)


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
    fig = per_trace(grid_figure, trace, (ctx.layer, ctx.head))  # thumbnails cached per trace; outline per head
    ctx.chart(fig, key="head_grid_fig", on_select=select_head_from_grid, selection_mode="points")
    figures, table = per_trace(stat_views, trace)
    st.subheader("Per-head summary")
    for col, (name, stat_fig) in zip(st.columns(len(figures)), figures.items(), strict=True):
        with col:
            ctx.chart(stat_fig, key=f"head_stat_{name}")
    ctx.table(table, hide_index=True, key="head_summary_table")
