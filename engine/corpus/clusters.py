"""Heads grouped by what they do over a corpus: each head a vector of its corpus means (FEATURES), standardised
across heads; Ward's hierarchical clustering into k groups, and a 2D PCA of the same vectors to place them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..arrays import readonly
from ..errors import InputError
from .joint import project

FEATURES = ("entropy", "first", "previous", "self", "distance", "duplicate_token", "induction")


@dataclass(frozen=True)
class HeadClusters:
    features: np.ndarray  # [n_layers * n_heads, len(FEATURES)]: the corpus means (NaN as 0), head h of layer l at l·H+h
    xy: np.ndarray  # [n_layers * n_heads, 2]: PCA of the standardised features
    cluster: np.ndarray  # int [n_layers * n_heads], 1..k
    explained: np.ndarray  # [2], the PCA axes' share of the variance


def cluster_heads(means: dict[str, np.ndarray], k: int = 6) -> HeadClusters:
    """means[name]: [n_layers, n_heads] per name in FEATURES (CorpusStats.mean)."""
    from scipy.cluster.hierarchy import fcluster, linkage

    features = np.stack([np.nan_to_num(np.asarray(means[f], dtype=np.float64)).ravel() for f in FEATURES], 1)
    n = len(features)
    if not 1 <= k <= n:
        raise InputError(f"the number of clusters must be between 1 and {n}, not {k}.")
    spread = features.std(0)
    standard = (features - features.mean(0)) / np.where(spread > 0, spread, 1)
    cluster = fcluster(linkage(standard, "ward"), k, "maxclust") if n > 1 else np.ones(1, dtype=int)
    xy, _, explained = project(standard, "pca")
    return HeadClusters(readonly(features), xy, np.asarray(cluster, dtype=np.int64), explained)
