"""The next-token prediction panel, shown under the pattern and in the interventions tab (not a tab itself)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import engine
from components import state
from components.derived import per_trace
from components.figures.predictions import prediction_figure, prediction_table
from components.labels import markdown_literal, token_text
from components.views.context import ViewContext
from engine.analysis.predict import top_predictions

TOP_K = 10


def prediction_view(model: engine.Model, trace: engine.Trace, base: engine.Trace | None,
                    position: int) -> tuple[go.Figure, pd.DataFrame | None]:
    """(figure, table or None) of the top next tokens, with the unmodified run beside when given."""
    rows = top_predictions(model, trace, position, k=TOP_K, base=base)
    if base is None:
        return prediction_figure(rows), None
    base_rows = top_predictions(model, base, position, k=TOP_K, base=trace)
    return prediction_figure(base_rows, rows), prediction_table(base_rows, rows)


def render_predictions(ctx: ViewContext, key: str, choose_position: bool = False) -> None:
    """The panel; `key` tells its widgets apart in each tab that shows it."""
    cfg, trace = ctx.model.config, ctx.trace
    st.subheader("Next-token prediction")
    if not cfg.has_lm_head:
        st.info(f"{markdown_literal(cfg.name)} is an encoder without a language-model head, so it predicts no next "
                "token. Its attention, Δe and word senses are all here; pick SmolLM2 to see predictions change.")
        return
    n = trace.n_tokens
    position = ctx.state.position if -1 <= ctx.state.position < n else -1
    if choose_position:  # the widget has its own key: the state's position outlives tabs that do not draw it
        labels = [token_text(t) for t in trace.tokens]
        position = st.selectbox("after token", list(range(-1, n)), index=position + 1, key="position_widget",
                                format_func=lambda i: "the last token" if i == -1 else f"{i}: {labels[i]}")
    if position != ctx.state.position:
        state.update(position=position)
    fig, table = per_trace(prediction_view, ctx.model, trace, ctx.base, position)
    if table is not None:
        st.caption("An intervention is active: the unmodified run is beside it, with the change in probability.")
    ctx.chart(fig, key=f"pred_fig_{key}")
    if table is not None:
        ctx.table(table, hide_index=True, key=f"pred_table_{key}")
