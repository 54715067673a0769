"""What every view's `render(ctx)` gets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go

import engine
from components import widgets
from components.settings import Settings
from components.state import AppState, Schema


@dataclass(frozen=True)
class ViewContext:
    model: engine.Model
    trace: engine.Trace  # the run the sidebar asks for: its mask and switched-off heads
    base: engine.Trace | None  # the unmodified run, while a mask or a head switch is active
    state: AppState
    schema: Schema  # the tabs (id -> label) and every view's fields: the registry's
    run: Callable[[str, bool | None], engine.Trace]  # the cached engine run of another text (every head on)
    settings: Settings
    trace_later: Callable[[], engine.Trace]  # `trace` again after this script run (a download clicked later),
    # without keeping it alive meanwhile (components/runs.py, `later`)

    @property
    def layer(self) -> int:
        return self.state.layer

    @property
    def head(self) -> int:
        return self.state.head

    @property
    def head_off(self) -> bool:
        """Is the chosen head switched off in this run?"""
        return not bool(self.trace.head_mask[self.layer, self.head])

    def chart(self, fig: go.Figure, key: str, **kwargs: Any):
        """Draw a figure, its camera button saving in the format the visitor chose."""
        return widgets.chart(fig, key, self.state.figure_format, **kwargs)

    def table(self, data: Any, key: str, **kwargs: Any) -> None:
        """Draw a table (st.dataframe) that tests and the page find by its key."""
        widgets.table(data, key, **kwargs)
