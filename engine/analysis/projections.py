"""PCA projections: one head's queries and keys in one space, e -> e + Δe, and tokens' paths through layers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..arrays import readonly
from ..trace import Trace


@dataclass(frozen=True)
class PCA:
    """A principal-component basis: coords = (x − mean) @ components.T."""

    mean: np.ndarray  # [d]
    components: np.ndarray  # [k, d], unit rows; the largest-|value| loading of each is positive
    explained: np.ndarray  # [k], fraction of the points' variance along each component
    n_points: int

    def transform(self, x: np.ndarray) -> np.ndarray:
        """[..., d] -> [..., k]."""
        return (np.asarray(x, dtype=np.float64) - self.mean) @ self.components.T


def pca(points: np.ndarray | torch.Tensor, k: int = 3) -> PCA:
    """PCA by SVD of centred points [m, d], float64, deterministic signs; missing components are zero."""
    x = np.asarray(points.detach().cpu().double() if isinstance(points, torch.Tensor) else points, dtype=np.float64)
    mean = x.mean(0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)  # vt [min(m, d), d]
    total = float((s**2).sum())
    components = np.zeros((k, x.shape[1]))
    explained = np.zeros(k)
    r = min(k, len(s))
    components[:r] = vt[:r]
    explained[:r] = s[:r] ** 2 / total if total > 0 else 0.0
    for row in components:
        if row[np.argmax(np.abs(row))] < 0:
            row *= -1
    return PCA(mean=readonly(mean), components=readonly(components), explained=readonly(explained), n_points=len(x))


@dataclass(frozen=True)
class QKProjection:
    """Queries and keys of one head in one shared PCA space, and one query's pattern row."""

    layer: int
    head: int
    queries: np.ndarray  # [n, k]
    keys: np.ndarray  # [n, k]
    query: int
    weights: np.ndarray  # [n_key], the query's pattern row, to draw lines to its top keys
    basis: PCA

    def top_keys(self, m: int = 3) -> list[int]:
        """The m keys the query attends to most (masked keys have weight 0 and come last)."""
        return [int(i) for i in np.argsort(-self.weights, kind="stable")[:m]]


def qk_projection(trace: Trace, layer: int, head: int, query: int, k: int = 3) -> QKProjection:
    """Project a head's queries and keys (after rotary, as the scores use them) with one shared basis."""
    q = trace["q", layer, head].float()  # [n, d_head]
    key = trace["k", layer, head].float()  # [n, d_head]
    basis = pca(torch.cat([q, key]), k)
    row = trace.pattern_rows(layer, slice(query, query + 1), head)[0]  # [n]
    return QKProjection(layer, head, readonly(basis.transform(q.cpu().numpy())),
                        readonly(basis.transform(key.cpu().numpy())), query, readonly(row), basis)


@dataclass(frozen=True)
class DeltaProjection:
    """Each token's embedding before a layer's attention and after adding Δe (all heads or one)."""

    layer: int
    head: int | None  # None: all heads (attn_out)
    before: np.ndarray  # [n, k]
    after: np.ndarray  # [n, k]
    delta_norms: np.ndarray  # [n]
    basis: PCA


def delta_projection(trace: Trace, layer: int, head: int | None = None, k: int = 3,
                     skip: Sequence[int] = ()) -> DeltaProjection:
    """e -> e + Δe for every token; the basis is fitted on both sets (tokens in `skip` left out of the fit,
    e.g. a first token whose huge norm would swallow the picture)."""
    before = trace["resid_pre", layer].float().cpu()  # [n, d_model]
    delta = (trace["attn_out", layer] if head is None else trace["head_out", layer, head]).float().cpu()
    after = before + delta
    keep = [i for i in range(len(before)) if i not in set(skip)] or list(range(len(before)))
    basis = pca(torch.cat([before[keep], after[keep]]), k)
    return DeltaProjection(layer, head, readonly(basis.transform(before.numpy())),
                           readonly(basis.transform(after.numpy())), readonly(delta.norm(dim=-1)), basis)


@dataclass(frozen=True)
class PathProjection:
    """Tokens' residual vectors at every layer (embedding, after block 0, ...) in one PCA basis."""

    tokens: tuple[int, ...]
    coords: np.ndarray  # [len(tokens), n_layers + 1, k]
    basis: PCA


def layer_path(trace: Trace, tokens: Sequence[int], k: int = 3) -> PathProjection:
    """The path of each chosen token through all layers, projected on the PCA of those paths."""
    resid = trace.residual_stream()[:, list(tokens)].transpose(0, 1).cpu()  # [m, n_layers + 1, d_model]
    basis = pca(resid.reshape(-1, resid.shape[-1]), k)
    return PathProjection(tuple(tokens), readonly(basis.transform(resid.numpy())), basis)
