"""Next-token predictions as a table and a bar chart, with the change an intervention made.

A prediction row is `(token, prob)` or `(token, prob, prob_in_other_run)`, or any object with `.token`,
`.prob` and optionally `.base_prob` (the engine's `Prediction`, whose `base_prob` is the token's probability
in the run it was compared with) and `.token_id` (used to match rows across runs when present).
`base` is always the unmodified run; `changed` the run with the intervention, or None.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from components.figures.layout import margin
from components.labels import token_labels, token_text

BASE_COLOR, CHANGED_COLOR = "rgb(158,202,225)", "rgb(230,85,13)"


class _Row(NamedTuple):
    key: Any  # token id when known, else the token text
    token: str
    prob: float
    other: float  # probability in the other run; NaN when not given


def _rows(predictions: Sequence[Any]) -> list[_Row]:
    rows = []
    for p in predictions:
        if isinstance(p, tuple | list):
            token, prob, other = p[0], p[1], p[2] if len(p) > 2 else None
            key = token
        else:
            token, prob, other = p.token, p.prob, getattr(p, "base_prob", None)
            key = getattr(p, "token_id", token)
        rows.append(_Row(key, token, float(prob), math.nan if other is None else float(other)))
    return rows


def _compare(base: Sequence[Any], changed: Sequence[Any]) -> pd.DataFrame:
    """Union of both top-k lists, changed run's order first: token, p after, p before, ranks."""
    b, c = _rows(base), _rows(changed)
    before = {r.key: r.other for r in c} | {r.key: r.prob for r in b}  # a run's own numbers win
    after = {r.key: r.other for r in b} | {r.key: r.prob for r in c}
    rank_b = {r.key: i + 1 for i, r in enumerate(b)}
    rank_c = {r.key: i + 1 for i, r in enumerate(c)}
    order = [*c, *(r for r in b if r.key not in rank_c)]
    return pd.DataFrame({
        "token": [r.token for r in order],
        "after": [after.get(r.key, math.nan) for r in order],
        "before": [before.get(r.key, math.nan) for r in order],
        "rank": [rank_c.get(r.key) for r in order],
        "rank before": [rank_b.get(r.key) for r in order],
    })


def prediction_table(base: Sequence[Any], changed: Sequence[Any] | None = None) -> pd.DataFrame:
    """DataFrame of the predictions, probabilities in percent.

    Without an intervention: rank, token, probability %. With one: the changed run's top-k, then base
    tokens that dropped out of it, with columns rank, token, probability %, before %, Δ pp (percentage
    points, after − before), rank before. Ranks outside a run's top-k are empty (<NA>).
    """
    if changed is None:
        rows = _rows(base)
        return pd.DataFrame({
            "rank": np.arange(1, len(rows) + 1),
            "token": [token_text(r.token) for r in rows],
            "probability %": [100 * r.prob for r in rows],
        })
    df = _compare(base, changed)
    return pd.DataFrame({
        "rank": pd.array(df["rank"], dtype="Int64"),
        "token": [token_text(t) for t in df["token"]],
        "probability %": 100 * df["after"],
        "before %": 100 * df["before"],
        "Δ pp": 100 * (df["after"] - df["before"]),
        "rank before": pd.array(df["rank before"], dtype="Int64"),
    })


def prediction_figure(base: Sequence[Any], changed: Sequence[Any] | None = None, *, title: str = "") -> go.Figure:
    """Horizontal bars of the top-k next tokens (most likely at the top); with an intervention, the
    unmodified and the changed run side by side for every token in either top-k."""
    if changed is None:
        rows = _rows(base)
        tokens, series = [r.token for r in rows], [("probability", [r.prob for r in rows], CHANGED_COLOR)]
    else:
        df = _compare(base, changed)
        tokens = list(df["token"])
        series = [("unmodified", list(df["before"]), BASE_COLOR),
                  ("with intervention", list(df["after"]), CHANGED_COLOR)]
    labels = token_labels(tokens)
    positions = np.arange(len(tokens))
    bars = [
        go.Bar(y=positions, x=100 * np.asarray(probs, dtype=np.float64), orientation="h", name=name,
               marker=dict(color=color), customdata=labels,
               hovertemplate=f"%{{customdata}}<br>{name}: %{{x:.2f}}%<extra></extra>")
        for name, probs, color in series
    ]
    return go.Figure(data=bars, layout=dict(
        yaxis=dict(tickvals=positions, ticktext=labels, autorange="reversed", title=dict(text="next token"),
                   automargin=True),
        xaxis=dict(title=dict(text="probability (%)"), rangemode="tozero", automargin=True),
        title=dict(text=title), barmode="group", height=max(30 * len(tokens) + 120, 250),
        showlegend=changed is not None, legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0.0),
        margin=margin(40 if title or changed is not None else 20),
    ))
