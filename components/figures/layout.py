"""What every figure shares: margins, the colour of masked cells, two stacked subplots, layer × head heatmaps,
and the options of Plotly's camera button (format and publication size)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

MASKED_COLOR = "rgb(190,190,190)"  # a cell or bar the mask hides, in every figure
MASKED_RGB = (190, 190, 190)
FORMATS = ("png", "svg")  # what the camera button can save
EXPORT_WIDTH = 1000  # CSS pixels: wide enough for a full-width figure in a paper
EXPORT_HEIGHT = 700  # for figures that leave their height to the page
PNG_SCALE = 3  # a PNG is 3,000 pixels wide: 300 dpi at 10 inches


def margin(top: int = 50) -> dict:
    """The figures' margins: tight on three sides, room for a title on top."""
    return dict(l=10, r=10, t=top, b=10)


def export_config(fmt: str, name: str, height: int | None) -> dict:
    """Plotly config for `st.plotly_chart`: no logo; the camera button saves `name.fmt` at a publication size."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
    return {"displaylogo": False, "toImageButtonOptions": {
        "format": fmt, "filename": name, "width": EXPORT_WIDTH, "height": height or EXPORT_HEIGHT,
        "scale": PNG_SCALE if fmt == "png" else 1}}


def stacked_axes(heights: tuple[float, float] = (1, 1), spacing: float = 0.08,
                 titles: Sequence[str] = ()) -> dict:
    """Layout entries for two subplots stacked over a shared x axis, placed as
    make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=heights, vertical_spacing=spacing,
    subplot_titles=titles) places them: traces go on axes ("x", "y") above and ("x2", "y2") below.

    Returns xaxis, yaxis, xaxis2, yaxis2 (dicts a caller may update) and, given titles, annotations."""
    total = float(sum(heights))
    upper, lower = ((1.0 - spacing) * h / total for h in heights)
    top, bottom = [lower + spacing, min(lower + spacing + upper, 1.0)], [0.0, lower]
    axes = dict(xaxis=dict(anchor="y", domain=[0.0, 1.0], matches="x2", showticklabels=False),
                yaxis=dict(anchor="x", domain=top),
                xaxis2=dict(anchor="y2", domain=[0.0, 1.0]),
                yaxis2=dict(anchor="x2", domain=bottom))
    if titles:
        axes["annotations"] = [dict(text=text, x=0.5, xref="paper", xanchor="center", y=domain[1], yref="paper",
                                    yanchor="bottom", showarrow=False, font=dict(size=16))
                               for text, domain in zip(titles, (top, bottom), strict=True)]
    return axes


def layer_head_figure(values: np.ndarray, *, title: str, colorbar: str, colorscale: str = "Viridis",
                      height: int | None = None, zmin: float | None = None, zmax: float | None = None) -> go.Figure:
    """Heatmap of one number per head, values [n_layers, n_heads]: rows = layers (0 at the top), columns = heads.
    zmin, zmax: a fixed colour range (default: the values' own)."""
    z = np.asarray(values, dtype=np.float32)  # [n_layers, n_heads]
    heatmap = go.Heatmap(z=z, colorscale=colorscale, colorbar=dict(title=dict(text=colorbar)), zmin=zmin, zmax=zmax,
                         hovertemplate="layer %{y}, head %{x}: %{z:.3f}<extra></extra>")
    return go.Figure(data=[heatmap], layout=dict(
        xaxis=dict(title=dict(text="head"), showgrid=False, zeroline=False, dtick=1 if z.shape[1] <= 16 else None,
                   automargin=True),
        yaxis=dict(title=dict(text="layer"), autorange="reversed", showgrid=False, zeroline=False, automargin=True),
        title=dict(text=title), height=height or min(max(14 * z.shape[0] + 120, 250), 600), margin=margin(),
    ))
