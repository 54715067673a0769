"""Pure analyses over a Trace: how attention moves meaning.

Embedding deltas (Δe per head) and their sum, a logit lens on deltas, the value down/up factoring, PCA
projections, word senses across sentences, and parameter counts. Everything returns numpy arrays or small
dataclasses; nothing here imports Streamlit or Plotly.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .model import Model
from .trace import Trace


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def residual_by_layer(trace: Trace) -> torch.Tensor:
    """[n_layers + 1, n, d_model]: index 0 is the embedding (resid_pre of block 0), index l + 1 is after block l."""
    L = trace.config.n_layers
    return torch.stack([trace["resid_pre", 0]] + [trace["resid_post", layer] for layer in range(L)]).float()


def layer_names(n_layers: int) -> list[str]:
    """Names of the n_layers + 1 points of `residual_by_layer`: 'embedding', 'after block 0', ..."""
    return ["embedding"] + [f"after block {layer}" for layer in range(n_layers)]


def post_norm_note(trace_or_model: Trace | Model) -> str:
    """Empty for pre-norm models; for post-norm (BERT) the caveat that Δe is added before a norm."""
    if trace_or_model.config.norm_placement != "post":
        return ""
    return ("This model is post-norm (BERT): each block adds Δe to the residual stream and then applies "
            "LayerNorm, resid_mid = LN(resid_pre + attn_out); the deltas shown are added before that norm.")


# ---- embedding deltas ---------------------------------------------------------------------------------------

def head_delta_norms(trace: Trace, layer: int) -> np.ndarray:
    """[n_heads, n_tokens]: ‖Δe‖ = ‖head_out‖, how far each head moves each token's embedding."""
    return _np(trace["head_out", layer].float().norm(dim=-1))


@dataclass
class DeltaSum:
    """Each head's Δe at one token, their sum and the attention output: Σ_h head_out + b_O = attn_out."""

    layer: int
    token: int
    head_out: np.ndarray  # [n_heads, d_model]
    b_O: np.ndarray  # [d_model]; zeros when the model has no output bias
    has_bias: bool
    heads_sum: np.ndarray  # [d_model], Σ_h head_out
    attn_out: np.ndarray  # [d_model]
    resid_pre: np.ndarray  # [d_model], the embedding before this layer
    along: np.ndarray  # [n_heads], each head's component along attn_out's direction
    bias_along: float  # b_O's component along attn_out's direction
    error: float  # max |Σ_h head_out + b_O − attn_out|

    @property
    def head_norms(self) -> np.ndarray:  # [n_heads]
        return np.linalg.norm(self.head_out, axis=-1)

    @property
    def attn_norm(self) -> float:
        return float(np.linalg.norm(self.attn_out))


def delta_sum(trace: Trace, layer: int, token: int) -> DeltaSum:
    """Decompose the attention output at `token` into its heads' Δe (and the output bias)."""
    head_out = trace["head_out", layer][:, token].double()  # [n_heads, d_model]
    attn_out = trace["attn_out", layer][token].double()  # [d_model]
    bias = trace.b_O[layer]
    b_O = bias.double() if bias is not None else torch.zeros_like(attn_out)
    heads_sum = head_out.sum(0)
    unit = attn_out / attn_out.norm().clamp_min(1e-12)
    return DeltaSum(layer=layer, token=token, head_out=_np(head_out), b_O=_np(b_O), has_bias=bias is not None,
                    heads_sum=_np(heads_sum), attn_out=_np(attn_out),
                    resid_pre=_np(trace["resid_pre", layer][token]), along=_np(head_out @ unit),
                    bias_along=float(b_O @ unit), error=float((heads_sum + b_O - attn_out).abs().max()))


# ---- logit lens -------------------------------------------------------------------------------------------

@dataclass
class LensReading:
    """A vector read through the unembedding: the tokens it pushes up and down most."""

    label: str
    up: list[tuple[str, float]]  # (token, logit), highest first
    down: list[tuple[str, float]]  # (token, logit), lowest first


def lens_note(model: Model) -> str:
    """How `logit_lens` decodes for this model."""
    if model.config.has_lm_head:
        return "Decoded through the model's final norm and its unembedding W_U (the logit lens)."
    return (f"{model.config.name} has no language-model head: vectors are decoded through its tied input "
            "embedding W_E (logits = vector · W_Eᵀ, no final norm), a nearest-token reading.")


def logit_lens(model: Model, vectors: torch.Tensor | np.ndarray, labels: Sequence[str], k: int = 8,
               final_norm: bool = True) -> list[LensReading]:
    """Decode vectors [m, d_model] into their top-k and bottom-k tokens (see `lens_note`)."""
    vectors = torch.as_tensor(np.asarray(vectors, dtype=np.float32))  # [m, d_model]
    logits = model.unembed(vectors, final_norm=final_norm).float().cpu()  # [m, d_vocab]
    top, bottom = logits.topk(k, dim=-1), (-logits).topk(k, dim=-1)
    out = []
    for i, label in enumerate(labels):
        up = [(model.readable([int(t)])[0], float(v)) for v, t in zip(top.values[i], top.indices[i], strict=True)]
        down = [(model.readable([int(t)])[0], -float(v))
                for v, t in zip(bottom.values[i], bottom.indices[i], strict=True)]
        out.append(LensReading(label, up, down))
    return out


def delta_lens(model: Model, trace: Trace, layer: int, head: int, token: int, k: int = 8) -> list[LensReading]:
    """Logit lens of one head's Δe at a token, of the residual before it, after it, and after all heads."""
    before = trace["resid_pre", layer][token].float()  # [d_model]
    delta = trace["head_out", layer, head][token].float()  # [d_model]
    attn = trace["attn_out", layer][token].float()
    vectors = torch.stack([before, delta, before + delta, before + attn])  # [4, d_model]
    labels = ["residual before", f"Δe of head {head}", f"before + Δe of head {head}", "before + all heads"]
    return logit_lens(model, vectors, labels, k)


# ---- value down / value up ----------------------------------------------------------------------------------

@dataclass
class ValueFactoring:
    """One head's value map W_V[h] W_O[h] factored into 'value down' and 'value up', and what a query mixes."""

    layer: int
    head: int
    kv_head: int  # which key/value head this query head reads (grouped-query attention)
    kv_group: int  # how many query heads share that key/value head
    value_down_shape: tuple[int, int]  # W_V[h]: (d_model, d_head)
    value_up_shape: tuple[int, int]  # W_O[h]: (d_head, d_model)
    query: int
    weights: np.ndarray  # [n_tokens] pattern[h, query, :], the mixing weights
    value_norms: np.ndarray  # [n_tokens] ‖v_j W_O[h]‖: each token's value vector in embedding space
    contributions: np.ndarray  # [n_tokens, d_model] w_j · v_j W_O[h]
    error: float  # max |Σ_j w_j v_j W_O[h] − head_out[h, query]|

    @property
    def value_down_params(self) -> int:
        return self.value_down_shape[0] * self.value_down_shape[1]

    @property
    def value_up_params(self) -> int:
        return self.value_up_shape[0] * self.value_up_shape[1]

    @property
    def contribution_norms(self) -> np.ndarray:  # [n_tokens]
        return np.linalg.norm(self.contributions, axis=-1)


def value_factoring(model: Model, trace: Trace, layer: int, head: int, query: int) -> ValueFactoring:
    """The value vectors the query mixes, weighted by the pattern, and the check that they sum to Δe."""
    cfg = model.config
    W_V = model.params[f"blocks.{layer}.attn.W_V"]  # [n_kv_heads, d_model, d_head]
    W_O = model.params[f"blocks.{layer}.attn.W_O"]  # [n_heads, d_head, d_model]
    kv_head = head // cfg.kv_group
    on = float(trace.head_mask[layer, head])
    weights = trace["pattern", layer, head][query].double() * on  # [n_tokens]
    values = trace["v", layer, head].double() @ W_O[head].double()  # [n_tokens, d_model]
    contributions = weights[:, None] * values  # [n_tokens, d_model]
    error = (contributions.sum(0) - trace["head_out", layer, head][query].double()).abs().max()
    return ValueFactoring(layer=layer, head=head, kv_head=kv_head, kv_group=cfg.kv_group,
                          value_down_shape=tuple(W_V[kv_head].shape), value_up_shape=tuple(W_O[head].shape),
                          query=query, weights=_np(weights), value_norms=_np(values.norm(dim=-1)),
                          contributions=_np(contributions), error=float(error))


# ---- PCA projections ------------------------------------------------------------------------------------

@dataclass
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
    return PCA(mean=mean, components=components, explained=explained, n_points=len(x))


@dataclass
class QKProjection:
    """Queries and keys of one head in one shared PCA space."""

    layer: int
    head: int
    queries: np.ndarray  # [n, k]
    keys: np.ndarray  # [n, k]
    pattern: np.ndarray  # [n_query, n_key], to draw lines from a query to its top keys
    basis: PCA

    def top_keys(self, query: int, m: int = 3) -> list[int]:
        """The m keys this query attends to most (masked keys have weight 0 and come last)."""
        return [int(i) for i in np.argsort(-self.pattern[query], kind="stable")[:m]]


def qk_projection(trace: Trace, layer: int, head: int, k: int = 3) -> QKProjection:
    """Project head's queries and keys (after rotary, as the scores use them) with one shared basis."""
    q = trace["q", layer, head].float()  # [n, d_head]
    key = trace["k", layer, head].float()  # [n, d_head]
    basis = pca(torch.cat([q, key]), k)
    return QKProjection(layer, head, basis.transform(_np(q)), basis.transform(_np(key)),
                        _np(trace["pattern", layer, head]), basis)


@dataclass
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
    before = trace["resid_pre", layer].float()  # [n, d_model]
    delta = trace["attn_out", layer].float() if head is None else trace["head_out", layer, head].float()
    after = before + delta
    keep = [i for i in range(len(before)) if i not in set(skip)] or list(range(len(before)))
    basis = pca(torch.cat([before[keep], after[keep]]), k)
    return DeltaProjection(layer, head, basis.transform(_np(before)), basis.transform(_np(after)),
                           _np(delta.norm(dim=-1)), basis)


@dataclass
class PathProjection:
    """Tokens' residual vectors at every layer (embedding, after block 0, ...) in one PCA basis."""

    tokens: list[int]
    coords: np.ndarray  # [len(tokens), n_layers + 1, k]
    basis: PCA


def layer_path(trace: Trace, tokens: Sequence[int], k: int = 3) -> PathProjection:
    """The path of each chosen token through all layers, projected on the PCA of those paths."""
    resid = residual_by_layer(trace)[:, list(tokens)].transpose(0, 1)  # [m, n_layers + 1, d_model]
    basis = pca(resid.reshape(-1, resid.shape[-1]), k)
    return PathProjection(list(tokens), basis.transform(_np(resid)), basis)


# ---- word senses ----------------------------------------------------------------------------------------

PRESETS: dict[str, dict] = {
    "mole": {"word": "mole", "sentences": [
        ("animal", "The gardener trapped the burrowing mole"),
        ("animal", "Under the lawn lives a small furry burrowing animal, the mole"),
        ("chemistry", "In chemistry, the amount of a substance is measured in units called the mole"),
        ("chemistry", "The chemist weighed the compound and calculated the number of atoms in one mole"),
        ("skin", "The dermatologist examined the dark spot on his skin, a mole"),
    ]},
    "bank": {"word": "bank", "sentences": [
        ("river", "We had a picnic on the grass beside the river, on the bank"),
        ("river", "The fisherman cast his line from the muddy river bank"),
        ("money", "She deposited her paycheck and savings at the bank"),
        ("money", "To get a mortgage loan, he went to the bank"),
    ]},
    "tower": {"word": "tower", "sentences": [
        ("landmark", "In Paris, tourists climbed to the top of the Eiffel tower"),
        ("landmark", "The famous iron landmark of Paris is the Eiffel tower"),
        ("computer", "He installed a new graphics card inside his desktop computer tower"),
        ("miniature", "On my desk sits a tiny plastic souvenir, a miniature Eiffel tower"),
    ]},
}


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
    special = set(getattr(model.tokenizer, "all_special_ids", []) or [])
    offsets, cursor, lower = [], 0, text.lower()
    for token_id, token in zip(ids, model.readable(ids), strict=True):
        piece = token.strip().removeprefix("##").lower()  # '##' marks a WordPiece continuation
        start = lower.find(piece, cursor) if token_id not in special and piece else -1
        if start < 0:
            offsets.append((0, 0))
            continue
        cursor = start + len(piece)
        offsets.append((start, cursor))
    return offsets


def word_vectors(trace: Trace, span: Sequence[int], pool: str = "last") -> np.ndarray:
    """[n_layers + 1, d_model]: the word's contextual vector at each layer; pool 'last' sub-token or 'mean'."""
    resid = residual_by_layer(trace)[:, list(span)]  # [n_layers + 1, len(span), d_model]
    return _np(resid[:, -1] if pool == "last" else resid.mean(1))


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    """[..., S, d] -> [..., S, S] cosine similarities."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)
    return unit @ np.swapaxes(unit, -1, -2)


def similarity_by_layer(vectors: np.ndarray) -> np.ndarray:
    """vectors [S, n_layers + 1, d] -> [n_layers + 1, S, S] cosine similarity of the sentences at each layer."""
    return cosine_matrix(np.swapaxes(vectors, 0, 1))


def sense_pairs(labels: Sequence[str]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(same-sense pairs, different-sense pairs) of sentence indices; unlabelled ('') sentences are left out."""
    same, different = [], []
    for i, j in itertools.combinations(range(len(labels)), 2):
        if labels[i] and labels[j]:
            (same if labels[i] == labels[j] else different).append((i, j))
    return same, different


def sense_curves(similarity: np.ndarray, labels: Sequence[str]) -> dict[str, np.ndarray]:
    """Mean similarity per layer [n_layers + 1] over same-sense and different-sense pairs (those that exist)."""
    out = {}
    for name, pairs in zip(("same sense", "different sense"), sense_pairs(labels), strict=True):
        if pairs:
            out[name] = np.mean([similarity[:, i, j] for i, j in pairs], axis=0)
    return out


def sense_trajectories(vectors: np.ndarray, k: int = 2, normalize: bool = True) -> tuple[np.ndarray, PCA]:
    """vectors [S, n_layers + 1, d] -> coords [S, n_layers + 1, k] in one PCA basis over all points.
    normalize: unit vectors first, so the picture shows direction (what cosine similarity compares)."""
    x = np.asarray(vectors, dtype=np.float64)
    if normalize:
        x = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    basis = pca(x.reshape(-1, x.shape[-1]), k)
    return basis.transform(x), basis


def divergent_heads(traces: Sequence[Trace], targets: Sequence[int], labels: Sequence[str] | None = None
                    ) -> np.ndarray:
    """[n_layers, n_heads]: mean ‖Δe_a − Δe_b‖ of each head at the target token over pairs of sentences
    (different-sense pairs when labels give any, else all pairs): the heads that push the senses apart."""
    pairs = sense_pairs(labels)[1] if labels else []
    pairs = pairs or list(itertools.combinations(range(len(traces)), 2))
    cfg = traces[0].config
    out = np.zeros((cfg.n_layers, cfg.n_heads))
    if not pairs:
        return out
    for layer in range(cfg.n_layers):
        deltas = torch.stack([t["head_out", layer][:, pos].float() for t, pos in zip(traces, targets, strict=True)])
        out[layer] = np.mean([_np((deltas[i] - deltas[j]).norm(dim=-1)) for i, j in pairs], axis=0)
    return out


def top_heads(scores: np.ndarray, m: int = 5) -> list[tuple[int, int, float]]:
    """The m largest entries of a [n_layers, n_heads] array as (layer, head, value)."""
    flat = np.argsort(-scores, axis=None, kind="stable")[:m]
    return [(int(i // scores.shape[1]), int(i % scores.shape[1]), float(scores.flat[i])) for i in flat]


def attended(trace: Trace, layer: int, head: int, query: int, m: int = 3) -> list[tuple[int, str, float]]:
    """The m tokens this head's query attends to most: (position, token, weight)."""
    row = trace["pattern", layer, head][query]  # [n_key]
    weights, idx = row.topk(min(m, len(row)))
    return [(int(i), trace.tokens[int(i)], float(w)) for w, i in zip(weights, idx, strict=True)]


def sense_lens(model: Model, vectors: np.ndarray, k: int = 3) -> list[list[list[str]]]:
    """Top-k tokens of each sentence's target vector at each layer: [S][n_layers + 1][k] (see `lens_note`)."""
    S, P, d = vectors.shape
    flat = vectors.reshape(S * P, d)
    readings = logit_lens(model, flat, [""] * len(flat), k)
    return [[[tok for tok, _ in readings[s * P + p].up] for p in range(P)] for s in range(S)]


# ---- parameter counts ------------------------------------------------------------------------------------

CATEGORIES = ("embeddings", "attention", "MLPs", "norms", "unembedding")


def _category(name: str) -> str:
    parts = name.split(".")
    if parts[0] == "blocks":
        return {"attn": "attention", "mlp": "MLPs"}.get(parts[2], "norms")
    if parts[0] in ("embed", "pos_embed", "token_type_embed"):
        return "embeddings"
    if parts[0] == "unembed":
        return "unembedding"
    return "norms"


def param_categories(model: Model) -> dict[str, int]:
    """Parameters per category, counted from the actual weights with each tied tensor once (in `embeddings`,
    so a tied unembedding counts 0). The values sum to `model.n_params()`."""
    names = sorted(model.params, key=lambda n: (_category(n) == "unembedding", n))
    seen: set[tuple[int, int]] = set()
    out = dict.fromkeys(CATEGORIES, 0)
    for name in names:
        t = model.params[name]
        storage = (t.untyped_storage().data_ptr(), t.storage_offset())
        if storage in seen:
            continue
        seen.add(storage)
        out[_category(name)] += t.numel()
    return out


@dataclass
class AttentionCounts:
    """Attention parameters of a loaded model, from its weights."""

    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_model: int
    d_head: int
    per_matrix: dict[str, int]  # one head's W_Q, W_K, W_V (value down), W_O (value up)
    per_head: int  # W_Q + W_O of the head + its share of the (possibly shared) W_K and W_V
    per_head_unshared: int  # four full matrices, as if no key/value sharing
    biases_per_block: int  # b_Q, b_K, b_V, b_O of one block
    per_block: list[int]  # every attention weight and bias of each block
    all_attention: int

    @property
    def kv_group(self) -> int:
        return self.n_heads // self.n_kv_heads


def attention_counts(model: Model) -> AttentionCounts:
    """Per matrix, per head, per block and in all attention, from the model's actual weights."""
    cfg = model.config
    p = model.params
    per_matrix = {name: int(p[f"blocks.0.attn.{name}"][0].numel()) for name in ("W_Q", "W_K", "W_V", "W_O")}
    share = cfg.kv_group
    per_head = per_matrix["W_Q"] + per_matrix["W_O"] + (per_matrix["W_K"] + per_matrix["W_V"]) // share
    per_block = [sum(int(t.numel()) for name, t in p.items() if name.startswith(f"blocks.{layer}.attn."))
                 for layer in range(cfg.n_layers)]
    biases = sum(int(t.numel()) for name, t in p.items() if name.startswith("blocks.0.attn.b_"))
    return AttentionCounts(n_layers=cfg.n_layers, n_heads=cfg.n_heads, n_kv_heads=cfg.n_kv_heads,
                           d_model=cfg.d_model, d_head=cfg.d_head, per_matrix=per_matrix, per_head=per_head,
                           per_head_unshared=sum(per_matrix.values()), biases_per_block=biases,
                           per_block=per_block, all_attention=sum(per_block))


@dataclass(frozen=True)
class ConfigCounts:
    """Weights of a GPT-style model from its configuration alone, as the notes count them (no biases)."""

    name: str
    d_model: int
    d_head: int
    n_heads: int
    n_layers: int
    d_vocab: int
    n_ctx: int
    total_quoted: int  # the published total

    @property
    def per_matrix(self) -> int:
        return self.d_model * self.d_head  # one W_Q, W_K, value-down or value-up map

    @property
    def per_head(self) -> int:
        return 4 * self.per_matrix

    @property
    def per_block(self) -> int:
        return self.n_heads * self.per_head

    @property
    def all_attention(self) -> int:
        return self.n_layers * self.per_block

    @property
    def mlps(self) -> int:
        return self.n_layers * 2 * self.d_model * 4 * self.d_model  # up and down, d_mlp = 4 d_model

    @property
    def embeddings(self) -> int:
        return (self.d_vocab + self.n_ctx) * self.d_model  # tokens and positions; unembedding tied

    @property
    def total_estimate(self) -> int:
        return self.all_attention + self.mlps + self.embeddings


GPT3 = ConfigCounts(name="GPT-3 175B", d_model=12_288, d_head=128, n_heads=96, n_layers=96, d_vocab=50_257,
                    n_ctx=2_048, total_quoted=175_000_000_000)
