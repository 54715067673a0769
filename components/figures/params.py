"""Parameter counts: the notes' GPT-style count from a configuration, and where a model's parameters are."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from components.figures.layout import margin
from engine.analysis.params import ConfigCounts


def config_table(c: ConfigCounts, total_quoted: int = 0) -> pd.DataFrame:
    """The notes' counts for a GPT-style configuration."""
    rows = [
        ("one query or key matrix", c.per_matrix, f"d_model × d_head = {c.d_model:,} × {c.d_head}"),
        ("one head", c.per_head, "4 matrices: query, key, value down, value up"),
        ("one block of attention", c.per_block, f"{c.n_heads} heads"),
        ("all attention heads", c.all_attention, f"{c.n_layers} blocks"),
        ("MLPs", c.mlps, f"{c.n_layers} × 2 × d_model × 4 d_model"),
        ("embeddings", c.embeddings, f"({c.d_vocab:,} tokens + {c.n_ctx:,} positions) × d_model"),
        ("total, from the configuration", c.total_estimate, "without biases and norms"),
    ]
    if total_quoted:
        rows.append(("total, as published", total_quoted, "about 175 billion"))
    return pd.DataFrame(rows, columns=["what", "parameters", "how"])


def share_figure(parts: dict[str, int], title: str) -> go.Figure:
    """Horizontal bars of parameter counts by part, each labelled with its share of the whole."""
    parts = {k: v for k, v in parts.items() if v}
    bar = go.Bar(x=list(parts.values()), y=list(parts), orientation="h",
                 text=[f"{v / sum(parts.values()):.1%}" for v in parts.values()],
                 hovertemplate="%{y}: %{x:,}<extra></extra>")
    return go.Figure(data=[bar], layout=dict(
        yaxis=dict(autorange="reversed"), xaxis=dict(title=dict(text="parameters")), title=dict(text=title),
        height=300, margin=margin(),
    ))
