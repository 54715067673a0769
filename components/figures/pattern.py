"""The attention pattern of one head, and its pre-softmax scores, as token × token figures."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from components.figures import matrix as _matrix
from components.figures.layout import MASKED_COLOR
from components.figures.matrix import Layout
from components.labels import token_text

PATTERN_COLORSCALE = "Blues"
SCORES_COLORSCALE = "RdBu_r"
SCORE_NAME = "score q·k/√d_head"


def _check(a: np.ndarray, tokens: Sequence[str], name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    if a.shape != (len(tokens), len(tokens)):
        raise ValueError(f"{name} has shape {a.shape}, expected [n, n] with n = {len(tokens)} tokens")
    return a


def pattern_figure(
    pattern: np.ndarray | _matrix.Pooled,
    tokens: Sequence[str],
    *,
    layout: Layout = "query_rows",
    title: str = "",
    scores: np.ndarray | None = None,
    image_threshold: int = 128,
    zmax: float | None = 1.0,
    offset: int = 0,
    value_name: str = "weight",
) -> go.Figure:
    """Heatmap of pattern [n_query, n_key] (rows sum to 1); an image when n > image_threshold or when the
    pattern comes already pooled (a long text, reduced block by block by the engine). Any other non-negative
    query × key matrix draws the same way (value-weighted attention), named by value_name in hover and colour bar.

    layout "key_rows" transposes (keys as rows, each column sums to 1, as in the explanation). Hover names
    query, key, weight and, given scores [n_query, n_key], the raw q·k/√d_head. zmax=None: the pattern's max.
    offset: position of tokens[0] in the whole text, for a zoomed window (heatmap mode only).
    """
    image = isinstance(pattern, _matrix.Pooled) or len(tokens) > image_threshold
    if image:
        pooled = pattern if isinstance(pattern, _matrix.Pooled) else _matrix.pool(_check(pattern, tokens, "pattern"))
        top = float(zmax) if zmax is not None else max(pooled.high, 1e-9)
        traces = _matrix.image_traces(pooled.oriented(layout), tokens, layout, colorscale=PATTERN_COLORSCALE,
                                      zmin=0.0, zmax=top, value_name=value_name, colorbar_title=value_name)
    else:
        pattern = _check(pattern, tokens, "pattern")  # [n_query, n_key]
        top = float(zmax) if zmax is not None else max(float(pattern.max(initial=0.0)), 1e-9)
        z = _matrix.orient(pattern, layout)  # [rows, cols]
        lines = [f"{value_name} %{{z:.4f}}"]
        raw = None
        if scores is not None:
            raw = _matrix.orient(_check(scores, tokens, "scores"), layout)  # [rows, cols]
            lines.append(f"{SCORE_NAME} %{{customdata[2]:.3f}}")
        positions = np.arange(offset, offset + len(tokens))
        traces = [go.Heatmap(z=z, x=positions, y=positions, customdata=_matrix.cell_data(tokens, layout, raw),
                             colorscale=PATTERN_COLORSCALE, zmin=0.0, zmax=top,
                             colorbar=dict(title=dict(text=value_name)),
                             hovertemplate=_matrix.cell_hover(layout, *lines))]
    return go.Figure(data=traces, layout=_matrix.matrix_layout(tokens, layout, title, 0 if image else offset))


def scores_figure(
    scores: np.ndarray | _matrix.Pooled,
    masked: np.ndarray | None,
    tokens: Sequence[str],
    *,
    layout: Layout = "query_rows",
    title: str = "",
    image_threshold: int = 128,
    offset: int = 0,
) -> go.Figure:
    """Pre-softmax scores q·k/√d_head [n_query, n_key] on a diverging scale centred at 0.

    Masked cells (bool [n_query, n_key], True = masked) are not on the colour scale: a grey layer shows
    through their gap and hover says "−∞ (masked)" with the score the mask replaced. Already pooled scores
    (a long text) carry their mask as −inf.
    """
    image = isinstance(scores, _matrix.Pooled) or len(tokens) > image_threshold
    if image:
        pooled = scores if isinstance(scores, _matrix.Pooled) else _matrix.pool(
            _check(scores, tokens, "scores"), np.broadcast_to(np.asarray(masked, dtype=bool), (len(tokens),) * 2))
        bound = max(abs(pooled.low), abs(pooled.high), 1e-6)
        traces = _matrix.image_traces(pooled.oriented(layout), tokens, layout, colorscale=SCORES_COLORSCALE,
                                      zmin=-bound, zmax=bound, value_name="score", colorbar_title=SCORE_NAME)
    else:
        scores = _check(scores, tokens, "scores")  # [n_query, n_key]
        masked = np.broadcast_to(np.asarray(masked, dtype=bool), scores.shape)  # [n_query, n_key]
        bound = max(float(np.abs(scores[~masked]).max(initial=0.0)), 1e-6)
        z, hidden = _matrix.orient(scores, layout), _matrix.orient(masked, layout)  # [rows, cols]
        # Two layers, each with gaps (NaN) where the other draws: hover comes from whichever has the cell.
        positions = np.arange(offset, offset + len(tokens))
        grey = go.Heatmap(z=np.where(hidden, 1.0, np.nan).astype(np.float32), x=positions, y=positions,
                          showscale=False, hoverongaps=False,
                          colorscale=[[0, MASKED_COLOR], [1, MASKED_COLOR]],
                          customdata=_matrix.cell_data(tokens, layout, z, where=hidden),
                          hovertemplate=_matrix.cell_hover(
                              layout, f"{SCORE_NAME} −∞ (masked)", "before the mask: %{customdata[2]:.3f}"))
        main = go.Heatmap(z=np.where(hidden, np.nan, z).astype(np.float32), x=positions, y=positions,
                          hoverongaps=False,
                          customdata=_matrix.cell_data(tokens, layout, where=~hidden),
                          colorscale=SCORES_COLORSCALE, zmin=-bound, zmax=bound,
                          colorbar=dict(title=dict(text=SCORE_NAME)),
                          hovertemplate=_matrix.cell_hover(layout, f"{SCORE_NAME} %{{z:.3f}}"))
        traces = [grey, main]
    return go.Figure(data=traces, layout=_matrix.matrix_layout(tokens, layout, title, 0 if image else offset))


def pattern_csv(pattern: np.ndarray, tokens: Sequence[str], layout: Layout = "query_rows") -> str:
    """CSV text of the pattern as displayed: header row and first column are '3: mole' (position: token)."""
    z = _matrix.orient(_check(pattern, tokens, "pattern"), layout)  # [rows, cols]
    names = [f"{i}: {token_text(t)}" for i, t in enumerate(tokens)]
    row_title, col_title = _matrix.axis_titles(layout)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([f"{row_title.split(':')[0]} \\ {col_title.split(':')[0]}", *names])
    for name, row in zip(names, z, strict=True):
        writer.writerow([name, *(f"{v:.6g}" for v in row)])
    return out.getvalue()
