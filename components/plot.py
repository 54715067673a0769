"""One way to put a Plotly figure on the page: full width, PNG download button, no Plotly logo."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

PLOT_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}


def chart(fig: go.Figure | dict, key: str, **kwargs):
    """st.plotly_chart with the app's config; kwargs pass on (e.g. on_select for the head grid)."""
    return st.plotly_chart(fig, width="stretch", key=key, config=PLOT_CONFIG, **kwargs)
