"""One token × token matrix as a figure: an exact Heatmap for short inputs, a PNG image for long ones.

Axes are token positions 0..n-1 (tick text = labels) so repeated tokens never share a row or column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import plotly.graph_objects as go

from components.figures import image as _image
from components.figures.layout import MASKED_RGB, margin
from components.labels import axis_ticks, token_labels

Layout = Literal["query_rows", "key_rows"]
QUERY_TITLE = "query: attending from"
KEY_TITLE = "key: attending to"
HOVER_BLOCKS = 64  # hover resolution over an image: blocks per side
MAX_IMAGE_PX = 1024  # longer inputs are max-pooled to this many pixels per side (bounds the PNG)


def orient(a: np.ndarray, layout: Layout) -> np.ndarray:
    """[n_query, n_key] -> display [rows, cols]: unchanged for query rows, transposed for key rows."""
    if layout not in ("query_rows", "key_rows"):
        raise ValueError(f"layout must be 'query_rows' or 'key_rows', not {layout!r}")
    return a if layout == "query_rows" else np.swapaxes(a, 0, 1)


def axis_titles(layout: Layout) -> tuple[str, str]:
    """(row title, column title) for a layout."""
    return (QUERY_TITLE, KEY_TITLE) if layout == "query_rows" else (KEY_TITLE, QUERY_TITLE)


def cell_data(tokens: Sequence[str], layout: Layout, extra: np.ndarray | None = None,
              where: np.ndarray | None = None) -> np.ndarray:
    """[rows, cols, 2 or 3] object array of each cell's query token, key token (and extra value).

    extra is [rows, cols] (already oriented), rounded to 4 decimals; cells where `where` is False are left
    empty (no hover there), which keeps a layer's payload small. One array of strings and numbers, not a list
    per cell: Plotly deep-copies a figure's data, and n² small lists made that the slowest step of a rerun.
    """
    labels = np.array(token_labels(tokens), dtype=object)  # [n]
    out = np.empty((len(labels), len(labels), 2 if extra is None else 3), dtype=object)  # [n_query, n_key, k]
    out[..., 0], out[..., 1] = labels[:, None], labels[None, :]
    out = orient(out, layout)  # [rows, cols, k]
    if extra is not None:
        out[..., 2] = np.round(np.asarray(extra, dtype=np.float64), 4)
    if where is not None:
        out[~np.asarray(where, dtype=bool)] = ""
    return out


def cell_hover(layout: Layout, *lines: str) -> str:
    """Hover template naming the query and key (position: token) of a cell, then the given lines."""
    q, k = ("%{y:d}", "%{x:d}") if layout == "query_rows" else ("%{x:d}", "%{y:d}")
    head = f"query {q}: %{{customdata[0]}}<br>key {k}: %{{customdata[1]}}"
    return "<br>".join([head, *lines]) + "<extra></extra>"


def block_labels(tokens: Sequence[str], edges: np.ndarray) -> list[str]:
    """'512–527: ␣the … ␣cat' for each block of positions between consecutive edges."""
    labels = token_labels(tokens, max_chars=12)
    return [
        f"{a}: {labels[a]}" if b - a == 1 else f"{a}–{b - 1}: {labels[a]} … {labels[b - 1]}"
        for a, b in zip(edges[:-1], edges[1:], strict=True)
    ]


def matrix_layout(tokens: Sequence[str], layout: Layout, title: str, offset: int = 0) -> dict:
    """Figure layout (a dict for `go.Figure(layout=...)`): token ticks on both axes, row 0 at the top, square
    cells, titles naming query and key.

    offset: the position of tokens[0] in the whole text, when the figure shows a window of it."""
    vals, text = axis_ticks(token_labels(tokens, max_chars=16), max_ticks=40)
    vals = [v + offset for v in vals]
    row_title, col_title = axis_titles(layout)
    n = len(tokens)
    return dict(
        xaxis=dict(title=dict(text=col_title), tickvals=vals, ticktext=text, range=[offset - 0.5, offset + n - 0.5],
                   showgrid=False, zeroline=False, constrain="domain", side="bottom", automargin=True),
        yaxis=dict(title=dict(text=row_title), tickvals=vals, ticktext=text, range=[offset + n - 0.5, offset - 0.5],
                   autorange=False, showgrid=False, zeroline=False, scaleanchor="x", scaleratio=1,
                   constrain="domain", automargin=True),
        title=dict(text=title), plot_bgcolor="white", margin=margin(),
    )


@dataclass(frozen=True)
class Pooled:
    """A long n × n matrix max-pooled for drawing (query rows): `pixels` [p, p] for the image and `blocks`
    [b, b] for hover, −inf where a whole block is masked; low and high: the extremes of its unmasked cells."""

    n: int
    pixels: np.ndarray
    blocks: np.ndarray
    low: float
    high: float

    def oriented(self, layout: Layout) -> Pooled:
        return Pooled(self.n, orient(self.pixels, layout), orient(self.blocks, layout), self.low, self.high)


def pool(z: np.ndarray, masked: np.ndarray | None = None) -> Pooled:
    """Pool a whole matrix [n, n] (masked cells, bool [n, n], count as −inf)."""
    vals = np.where(masked, -np.inf, z) if masked is not None else np.asarray(z, dtype=np.float32)
    finite = vals[np.isfinite(vals)]
    return Pooled(len(vals), _image.max_pool(vals, MAX_IMAGE_PX), _image.max_pool(vals, HOVER_BLOCKS),
                  float(finite.min(initial=0.0)), float(finite.max(initial=0.0)))


def image_traces(
    pooled: Pooled,
    tokens: Sequence[str],
    layout: Layout,
    *,
    colorscale: str,
    zmin: float,
    zmax: float,
    value_name: str,
    colorbar_title: str,
) -> list[go.BaseTraceType]:
    """A PNG image of a pooled matrix (already oriented for display) plus a transparent block Heatmap for hover
    and colour bar. Masked cells (−inf) get their own grey palette entry. Hover names the blocks of query and
    key positions under the cursor and the block's largest unmasked value.
    """
    n, pixels, block = pooled.n, pooled.pixels, pooled.blocks
    colors = _image.palette(colorscale, 255)
    index = _image.quantize(pixels, zmin, zmax, levels=255, offset=1)
    index[np.isneginf(pixels)] = 0
    grey = np.array([MASKED_RGB], dtype=np.uint8)
    scale = n / pixels.shape[0]  # tokens per pixel
    image = go.Image(source=_image.png_data_uri(index, np.concatenate([grey, colors])), x0=(scale - 1) / 2,
                     y0=(scale - 1) / 2, dx=scale, dy=scale, hoverinfo="skip",
                     zsmooth="fast" if pixels.shape[0] > 800 else False)
    edges = _image.pool_edges(n, block.shape[0])
    names = block_labels(tokens, edges)
    row_name, col_name = ("queries", "keys") if layout == "query_rows" else ("keys", "queries")
    value = np.where(np.isneginf(block), "−∞ (masked)", np.char.mod("%.4g", block).astype(object))
    data = np.empty(block.shape + (3,), dtype=object)
    data[..., 0] = np.array(names, dtype=object)[:, None]
    data[..., 1] = np.array(names, dtype=object)[None, :]
    data[..., 2] = value
    hover = go.Heatmap(
        z=np.where(np.isneginf(block), np.nan, block).astype(np.float32), x=edges - 0.5, y=edges - 0.5,
        customdata=data, opacity=0, colorscale=colorscale, zmin=zmin, zmax=zmax,
        colorbar=dict(title=dict(text=colorbar_title)), hoverongaps=True,
        hovertemplate=(f"{row_name} %{{customdata[0]}}<br>{col_name} %{{customdata[1]}}"
                       f"<br>largest {value_name}: %{{customdata[2]}}<extra></extra>"),
    )
    return [image, hover]
