"""Matrices as PNG images: colour palettes, quantising, max-pooling and a tiny PNG encoder (zlib only)."""

from __future__ import annotations

import base64
import struct
import zlib

import numpy as np
from plotly.colors import sample_colorscale


def palette(colorscale: str | list, n: int = 256) -> np.ndarray:
    """[n, 3] uint8 RGB colours sampled evenly from a Plotly colour scale."""
    rgb = sample_colorscale(colorscale, list(np.linspace(0.0, 1.0, n)), colortype="tuple")
    return np.clip(np.round(np.array(rgb) * 255), 0, 255).astype(np.uint8)


def quantize(values: np.ndarray, vmin: float, vmax: float, levels: int = 256, offset: int = 0) -> np.ndarray:
    """Map values to palette indices offset..offset+levels-1 (clipped; NaN -> offset)."""
    span = vmax - vmin if vmax > vmin else 1.0
    t = np.nan_to_num((np.asarray(values, dtype=np.float32) - vmin) / span, nan=0.0, posinf=1.0, neginf=0.0)
    return (offset + np.clip(np.round(t * (levels - 1)), 0, levels - 1)).astype(np.uint8)


def pool_edges(n: int, size: int) -> np.ndarray:
    """Block edges splitting range(n) into min(n, size) nearly equal blocks: [n_blocks + 1]."""
    return np.linspace(0, n, min(n, size) + 1).round().astype(np.int64)


def max_pool(a: np.ndarray, size: int) -> np.ndarray:
    """Max over blocks of the last two axes so each is at most `size` long: [..., n, m] -> [..., <=size, <=size].

    Max, not mean, keeps one strong key (a sharp diagonal, a sink column) visible in a thumbnail.
    """
    rows, cols = pool_edges(a.shape[-2], size), pool_edges(a.shape[-1], size)
    if len(rows) - 1 == a.shape[-2] and len(cols) - 1 == a.shape[-1]:
        return np.asarray(a, dtype=np.float32)
    a = np.asarray(a)
    if a.dtype == np.float16:  # non-negative float16 orders like its uint16 bits: 5x faster than casting first
        bits = np.maximum.reduceat(np.maximum.reduceat(a.view(np.uint16), cols[:-1], axis=-1), rows[:-1], axis=-2)
        if not (bits >= 0x8000).any():  # no sign bit in any block max: no negative value anywhere
            return bits.view(np.float16).astype(np.float32)
    out = np.maximum.reduceat(a.astype(np.float32, copy=False), cols[:-1], axis=-1)
    return np.maximum.reduceat(out, rows[:-1], axis=-2)


def png_data_uri(index: np.ndarray, colors: np.ndarray) -> str:
    """Encode [h, w] uint8 palette indices with [k, 3] uint8 colours as an indexed PNG data URI."""
    h, w = index.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = np.zeros((h, w + 1), dtype=np.uint8)  # each scanline starts with filter type 0
    raw[:, 1:] = index
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))
    png += chunk(b"PLTE", np.ascontiguousarray(colors, dtype=np.uint8).tobytes())
    png += chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + chunk(b"IEND", b"")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def decode_png_uri(uri: str) -> np.ndarray:
    """Inverse of png_data_uri for tests and checks: [h, w, 3] uint8 RGB."""
    data = base64.b64decode(uri.split(",", 1)[1])
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        chunks[kind] = chunks.get(kind, b"") + data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    w, h = struct.unpack(">II", chunks[b"IHDR"][:8])
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), dtype=np.uint8).reshape(h, w + 1)
    colors = np.frombuffer(chunks[b"PLTE"], dtype=np.uint8).reshape(-1, 3)
    return colors[rows[:, 1:]]
