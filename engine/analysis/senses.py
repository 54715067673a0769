"""Word senses: one word in several sentences, its contextual vector compared layer by layer."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

import numpy as np
import torch

from ..arrays import readonly
from ..model import Model
from ..trace import Trace


def find_word(model: Model, text: str, word: str) -> list[list[int]]:
    """Token positions of each whole-word, case-insensitive occurrence of `word` in `text` (one list per
    occurrence, in order; [] when absent). Positions index the trace of `model.run(text)`."""
    word = word.strip()
    if not word:
        return []
    offsets = _token_offsets(model, text)  # [(start, end)] per token; (0, 0) for special tokens
    spans = []
    for match in re.finditer(rf"(?<!\w){re.escape(word)}(?!\w)", text, flags=re.IGNORECASE):
        span = [i for i, (a, b) in enumerate(offsets) if b > a and a < match.end() and b > match.start()]
        if span:
            spans.append(span)
    return spans


def _token_offsets(model: Model, text: str) -> list[tuple[int, int]]:
    """Character span of each token: from a fast tokenizer, else by laying the readable tokens along the text."""
    if getattr(model.tokenizer, "is_fast", False):
        return model.tokenizer(text, return_offsets_mapping=True, verbose=False)["offset_mapping"]
    ids = model.tokenizer(text, verbose=False)["input_ids"]
    offsets, cursor, lower = [], 0, text.lower()
    for token_id, token in zip(ids, model.readable(ids), strict=True):
        piece = token.strip().removeprefix("##").lower()  # '##' marks a WordPiece continuation
        start = lower.find(piece, cursor) if token_id not in model.special_ids and piece else -1
        if start < 0:
            offsets.append((0, 0))
            continue
        cursor = start + len(piece)
        offsets.append((start, cursor))
    return offsets


def word_vectors(trace: Trace, span: Sequence[int], pool: str = "last") -> np.ndarray:
    """[n_layers + 1, d_model]: the word's contextual vector at each layer; pool 'last' sub-token or 'mean'."""
    resid = trace.residual_stream()[:, list(span)]  # [n_layers + 1, len(span), d_model]
    return readonly(resid[:, -1] if pool == "last" else resid.mean(1))


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    """[..., S, d] -> [..., S, S] cosine similarities."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)
    return unit @ np.swapaxes(unit, -1, -2)


def similarity_by_layer(vectors: np.ndarray) -> np.ndarray:
    """vectors [S, n_layers + 1, d] -> [n_layers + 1, S, S] cosine similarity of the sentences at each layer."""
    return readonly(cosine_matrix(np.swapaxes(vectors, 0, 1)))


def sense_pairs(labels: Sequence[str]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(same-sense pairs, different-sense pairs) of sentence indices; unlabelled ('') sentences are left out."""
    same, different = [], []
    for i, j in itertools.combinations(range(len(labels)), 2):
        if labels[i] and labels[j]:
            (same if labels[i] == labels[j] else different).append((i, j))
    return same, different


def sense_curves(similarity: np.ndarray, labels: Sequence[str]) -> dict[str, np.ndarray]:
    """Mean similarity per layer [n_layers + 1] over the "same" and the "different" sense pairs (those that exist)."""
    out = {}
    for name, pairs in zip(("same", "different"), sense_pairs(labels), strict=True):
        if pairs:
            out[name] = readonly(np.mean([similarity[:, i, j] for i, j in pairs], axis=0))
    return out


def sense_trajectories(vectors: np.ndarray, k: int = 2, normalize: bool = True):
    """vectors [S, n_layers + 1, d] -> (coords [S, n_layers + 1, k], PCA basis) in one basis over all points.
    normalize: unit vectors first, so the picture shows direction (what cosine similarity compares)."""
    from .projections import pca

    x = np.asarray(vectors, dtype=np.float64)
    if normalize:
        x = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    basis = pca(x.reshape(-1, x.shape[-1]), k)
    return readonly(basis.transform(x)), basis


def divergent_heads(traces: Sequence[Trace], targets: Sequence[int], labels: Sequence[str] | None = None
                    ) -> np.ndarray:
    """[n_layers, n_heads]: mean ‖Δe_a − Δe_b‖ of each head at the target token over pairs of sentences
    (different-sense pairs when labels give any, else all pairs): the heads that push the senses apart."""
    pairs = sense_pairs(labels)[1] if labels else []
    pairs = pairs or list(itertools.combinations(range(len(traces)), 2))
    cfg = traces[0].config
    out = np.zeros((cfg.n_layers, cfg.n_heads))
    if not pairs:
        return readonly(out)
    for layer in range(cfg.n_layers):
        deltas = torch.stack([head_out_at(t, layer, pos) for t, pos in zip(traces, targets, strict=True)])
        out[layer] = np.mean([(deltas[i] - deltas[j]).norm(dim=-1).cpu().numpy() for i, j in pairs], axis=0)
    return readonly(out)


def head_out_at(trace: Trace, layer: int, position: int) -> torch.Tensor:
    """Every head's Δe at one token: [n_heads, d_model] (z @ W_O at that position only)."""
    z = trace["z", layer][:, position]  # [n_heads, d_head]
    return torch.einsum("he,hed->hd", z, trace._weights.blocks[layer].attn.W_O).float()


def top_heads(scores: np.ndarray, m: int = 5) -> list[tuple[int, int, float]]:
    """The m largest entries of a [n_layers, n_heads] array as (layer, head, value)."""
    flat = np.argsort(-scores, axis=None, kind="stable")[:m]
    return [(int(i // scores.shape[1]), int(i % scores.shape[1]), float(scores.flat[i])) for i in flat]


def attended(trace: Trace, layer: int, head: int, query: int, m: int = 3) -> list[tuple[int, str, float]]:
    """The m tokens this head's query attends to most: (position, token, weight)."""
    row = trace.pattern_rows(layer, slice(query, query + 1), head)[0]  # [n_key]
    weights, idx = row.topk(min(m, len(row)))
    return [(int(i), trace.tokens[int(i)], float(w)) for w, i in zip(weights, idx, strict=True)]
