"""All heads at once: every head's pattern as one thumbnail in a single image, and per-head summaries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from components.figures import image as _image
from components.figures.layout import layer_head_figure, margin

THUMB_COLORSCALE = "Blues"
GAP_COLOR = (255, 255, 255)
SELECTED_COLOR = "#d62728"
OFF_COLOR = "rgb(90,90,90)"
LEVELS = 127  # palette: 0 = gap, 1..127 = heads on, 128..254 = the same colours dimmed for heads off
STAT_TITLES = {"entropy": "entropy (bits)", "first": "share on first token", "previous": "share on previous token",
               "self": "share on itself"}  # the small per-head heatmaps
# Role badges: role id (engine/analysis/roles.py) -> (the badge's text, its colour); first-token heads are many,
# so their badge is the quietest.
BADGES = {"previous_token": ("prev", "#1f77b4"), "duplicate_token": ("dup", "#9467bd"),
          "induction": ("ind", "#d62728"), "first_token": ("1st", "rgb(130,130,130)"), "self": ("self", "#2ca02c")}
STAT_COLUMNS = {
    "entropy": "entropy (bits)",
    "first": "first-token share",
    "previous": "previous-token share",
    "self": "self share",
}


def thumbnails(patterns: np.ndarray, max_thumb_px: int = 48) -> np.ndarray:
    """Max-pool every head's pattern to at most max_thumb_px per side, one layer at a time (bounded memory).

    [n_layers, n_heads, n, n] (any float dtype) -> float32 [n_layers, n_heads, t, t], t = min(n, max_thumb_px).
    """
    return np.stack([_image.max_pool(layer, max_thumb_px) for layer in patterns])


def _palette() -> np.ndarray:
    colors = _image.palette(THUMB_COLORSCALE, LEVELS).astype(np.float32)  # [LEVELS, 3]
    dimmed = 0.35 * colors + 0.65 * np.array([225.0, 225.0, 225.0])  # heads off: faded towards grey
    return np.concatenate([np.array([GAP_COLOR], np.float32), colors, dimmed]).round().astype(np.uint8)


def head_grid_figure(
    patterns: np.ndarray,
    *,
    selected: tuple[int, int] | None = None,
    disabled: np.ndarray | None = None,
    badges: Sequence[tuple[int, int, str, float]] = (),
    max_thumb_px: int = 48,
    gap_px: int = 2,
) -> go.Figure:
    """One image of all patterns [n_layers, n_heads, n, n]: rows = layers, columns = heads, colour 0..1.

    Each thumbnail is the max-pooled pattern (query rows, key columns). An invisible marker over each
    thumbnail gives hover "layer L, head H" and is what a click selects (customdata = [layer, head]).
    selected=(layer, head) gets an outline; disabled bool [n_layers, n_heads] (True = off) is dimmed and crossed.
    badges: (layer, head, role id of BADGES, score), drawn as the role's short name in the thumbnail's corner
    and named in its hover.
    """
    thumbs = thumbnails(patterns, max_thumb_px)  # [n_layers, n_heads, t, t]
    n_layers, n_heads, t, _ = thumbs.shape
    off = np.zeros((n_layers, n_heads), bool) if disabled is None else np.asarray(disabled, bool)
    index = _image.quantize(thumbs, 0.0, 1.0, levels=LEVELS, offset=1)  # [n_layers, n_heads, t, t]
    index[off] += LEVELS
    pitch = t + gap_px
    tiles = np.zeros((n_layers, pitch, n_heads, pitch), np.uint8)  # palette 0 = gap
    tiles[:, :t, :, :t] = index.transpose(0, 2, 1, 3)
    canvas = tiles.reshape(n_layers * pitch, n_heads * pitch)[: n_layers * pitch - gap_px, : n_heads * pitch - gap_px]
    origin = -(t - 1) / (2 * pitch)  # centre of thumbnail (L, H) lands on (x=H, y=L)
    image = go.Image(source=_image.png_data_uri(canvas, _palette()), x0=origin, y0=origin, dx=1 / pitch,
                     dy=1 / pitch, hoverinfo="skip")
    layers, heads = np.divmod(np.arange(n_layers * n_heads), n_heads)
    status = np.where(off.reshape(-1), " (switched off)", "").astype(object)
    for layer, head, role, score in badges:
        status[layer * n_heads + head] += f"<br>role: {role.replace('_', ' ')} ({score:.2f})"
    targets = go.Scatter(
        x=heads, y=layers, mode="markers", name="heads", showlegend=False,
        marker=dict(symbol="square", size=16, opacity=0), customdata=np.stack([layers, heads], 1).tolist(),
        text=status.tolist(), hovertemplate="layer %{customdata[0]}, head %{customdata[1]}%{text}<extra></extra>",
        selected=dict(marker=dict(opacity=0)), unselected=dict(marker=dict(opacity=0)),
    )
    crossed = np.argwhere(off)  # [n_off, 2] (layer, head)
    crosses = go.Scatter(
        x=crossed[:, 1], y=crossed[:, 0], mode="markers", name="switched off", showlegend=False,
        marker=dict(symbol="x-thin", size=14, line=dict(width=2, color=OFF_COLOR)), hoverinfo="skip",
    )
    layout = dict(
        xaxis=dict(title=dict(text="head"), tickvals=list(range(n_heads)), range=[-0.5, n_heads - 0.5],
                   showgrid=False, zeroline=False, side="top", constrain="domain", automargin=True),
        yaxis=dict(title=dict(text="layer"), tickvals=list(range(n_layers)), range=[n_layers - 0.5, -0.5],
                   autorange=False, showgrid=False, zeroline=False, scaleanchor="x", constrain="domain",
                   automargin=True),
        height=min(max(40 * n_layers + 80, 300), 1400), hovermode="closest", hoverdistance=-1,
        plot_bgcolor="white", margin=margin(40),
    )
    if selected is not None:
        layer, head = selected
        layout["shapes"] = [dict(type="rect", x0=head - 0.5, x1=head + 0.5, y0=layer - 0.5, y1=layer + 0.5,
                                 line=dict(color=SELECTED_COLOR, width=3))]
    layout["annotations"] = badge_annotations(badges)
    return go.Figure(data=[image, targets, crosses], layout=layout)


def badge_annotations(badges: Sequence[tuple[int, int, str, float]]) -> list[dict]:
    """The role badges (layer, head, role id, score) as small labels on a white ground in the top left corner of
    each thumbnail; clicks pass through them to the thumbnail."""
    return [dict(x=head - 0.5, y=layer - 0.5, xref="x", yref="y", xanchor="left", yanchor="top", showarrow=False,
                 text=BADGES[role][0], name=f"badge {layer}.{head} {role}", font=dict(size=9, color=BADGES[role][1]),
                 bgcolor="rgba(255,255,255,0.85)", borderpad=0)
            for layer, head, role, _ in badges]


def point_to_head(point: Mapping[str, Any]) -> tuple[int, int] | tuple[None, None]:
    """(layer, head) of a point from `st.plotly_chart(..., on_select=...)` selection, or (None, None)."""
    data = point.get("customdata")
    if isinstance(data, list | tuple) and len(data) >= 2:
        return int(data[0]), int(data[1])
    if point.get("x") is not None and point.get("y") is not None:
        return int(round(float(point["y"]))), int(round(float(point["x"])))
    return None, None


def head_summary_table(stats: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Tidy table, one row per head: layer, head and each stat given ([n_layers, n_heads] arrays).

    Keys "entropy", "first", "previous", "self" become entropy (bits), first-token share, previous-token
    share, self share.
    """
    present = {key: np.asarray(stats[key], dtype=np.float64) for key in STAT_COLUMNS if key in stats}
    if not present:
        raise ValueError(f"stats needs one of {list(STAT_COLUMNS)}")
    n_layers, n_heads = next(iter(present.values())).shape
    layers, heads = np.divmod(np.arange(n_layers * n_heads), n_heads)
    columns = {"layer": layers, "head": heads}
    columns.update({STAT_COLUMNS[key]: values.reshape(-1) for key, values in present.items()})
    return pd.DataFrame(columns)


def head_stat_figure(values: np.ndarray, title: str, colorbar_title: str) -> go.Figure:
    """Small heatmap of one number per head, values [n_layers, n_heads]: rows = layers, columns = heads."""
    return layer_head_figure(values, title=title, colorbar=colorbar_title)
