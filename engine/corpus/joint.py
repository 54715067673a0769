"""The joint query–key map of one head (AttentionViz, Yeh et al., 2023): queries and keys in one space.

`normalise` scales the queries by c and the keys by 1/c so that their mean norms match, then moves the keys by
one vector t so that their centroid is the queries' centroid. Neither changes an attention pattern: scaling
leaves every q·k as it is (c q · k / c), and the translation adds c q·t to every score of a query, the same for
all its keys, which the softmax ignores. `project` places the normalised points in 2D: PCA (default, exact and fast) or
t-SNE (openTSNE) on request, over at most `max_points` points (a seeded sample beyond that).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..arrays import readonly
from ..errors import InputError

METHODS = ("pca", "tsne")


@dataclass(frozen=True)
class Normalised:
    q: np.ndarray  # [N, d_head]: c · q
    k: np.ndarray  # [N, d_head]: k / c + t
    translation: np.ndarray  # t [d_head]: c · mean(q) − mean(k) / c
    scale: float  # c, with c² = mean ‖k‖ / mean ‖q‖


def normalise(q: np.ndarray, k: np.ndarray) -> Normalised:
    """AttentionViz's normalisation of queries q [N, d_head] and keys k [M, d_head] (float64 inside)."""
    q, k = np.asarray(q, dtype=np.float64), np.asarray(k, dtype=np.float64)
    q_norm, k_norm = np.linalg.norm(q, axis=1).mean(), np.linalg.norm(k, axis=1).mean()
    scale = float(np.sqrt(k_norm / q_norm)) if q_norm > 0 and k_norm > 0 else 1.0
    translation = scale * q.mean(0) - k.mean(0) / scale  # [d_head]
    return Normalised(q=readonly(q * scale), k=readonly(k / scale + translation), translation=readonly(translation),
                      scale=scale)


def project(points: np.ndarray, method: str = "pca", max_points: int = 4_000, seed: int = 0
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(xy [n, 2], which rows of `points` they are [n], explained variance ratio of the 2 axes (PCA; NaN for
    t-SNE)). PCA uses every point; t-SNE at most max_points, a sample fixed by `seed`."""
    points = np.asarray(points, dtype=np.float64)
    if method not in METHODS:
        raise InputError(f"projection must be one of {', '.join(METHODS)}, not {method!r}.")
    rows = np.arange(len(points))
    if method == "pca" or len(points) < 4:
        centred = points - points.mean(0)
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        axes = vt[:2]
        axes = axes * np.where(axes[np.arange(len(axes)), np.abs(axes).argmax(1)] < 0, -1, 1)[:, None]  # fixed sign
        var = s**2
        ratio = var[:2] / var.sum() if var.sum() > 0 else np.zeros(2)
        xy = centred @ axes.T
        if xy.shape[1] < 2:
            xy = np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))
        return readonly(xy), rows, readonly(np.pad(ratio, (0, 2 - len(ratio))))
    if len(points) > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(len(points), max_points, replace=False))
    from openTSNE import TSNE

    perplexity = float(min(30, max(2, (len(rows) - 1) // 3)))
    xy = np.asarray(TSNE(n_components=2, perplexity=perplexity, random_state=seed, n_jobs=1, verbose=False)
                    .fit(points[rows]))
    return readonly(xy), rows, readonly(np.full(2, np.nan))
