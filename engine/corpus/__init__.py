"""Many texts at once: per-head statistics over a corpus, and one head's queries and keys for a joint map.

    from engine import corpus
    texts = corpus.sample_corpus()                        # or corpus.parse(file bytes, file name)
    stats = corpus.corpus_stats(model, texts, max_tokens=64)
    stats.mean("previous"), stats.spread("entropy")       # [n_layers, n_heads], over the texts
    stats.per_text["induction"]                           # [n_texts, n_layers, n_heads], NaN: no repeat
    joint = corpus.corpus_qk(model, texts, layer=3, head=0, max_tokens=64)
    joint.q, joint.k, joint.text, joint.position          # one row per token of the corpus

Texts run in batches (run.py). With `ray_address` ("auto", "host:port" or "ray://host:port") the batches run
on a Ray cluster instead (on_ray.py): actors that each load the model once; the reduction is the same code, so
the numbers are the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from ..analysis.roles import ROLES
from ..arrays import readonly
from ..errors import InputError, RunCancelled
from ..model import Model
from .joint import normalise, project
from .run import MAX_BATCH, STATS, BatchResult, batches, run_batch
from .sample import sample_corpus
from .texts import Corpus, Limits, parse

Progress = Callable[[int, int], None]  # (texts done, texts in all)
NAMES = STATS + ROLES

__all__ = ["NAMES", "ROLES", "STATS", "Corpus", "CorpusStats", "JointQK", "Limits", "corpus_qk", "corpus_stats",
           "normalise", "parse", "project", "qk_bytes", "sample_corpus", "stats_bytes", "tokenize"]


@dataclass(frozen=True)
class Tokenized:
    token_ids: tuple[tuple[int, ...], ...]  # per text, cut to max_tokens
    truncated: np.ndarray  # bool [n_texts]

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.token_ids]


def tokenize(model: Model, corpus: Corpus, max_tokens: int) -> Tokenized:
    """Every text's token ids, cut to max_tokens (special tokens kept as a single run keeps them)."""
    if not len(corpus):
        raise InputError("the corpus holds no text.")
    ids, cut = [], []
    for number, text in enumerate(corpus.texts, start=1):
        try:
            token_ids, truncated, _ = model.tokenize(text, max_tokens)
        except InputError as err:
            raise InputError(f"text {number:,}: {err}") from None
        ids.append(tuple(token_ids))
        cut.append(truncated)
    return Tokenized(tuple(ids), readonly(np.array(cut)))


@dataclass(frozen=True)
class CorpusStats:
    """Per-text, per-head numbers over a corpus, the texts' ids being their indices."""

    per_text: MappingProxyType  # name (NAMES) -> float32 [n_texts, n_layers, n_heads]; roles NaN where undefined
    n_tokens: np.ndarray  # int [n_texts], after the cut
    truncated: np.ndarray  # bool [n_texts]
    causal: bool

    def mean(self, name: str) -> np.ndarray:
        """[n_layers, n_heads]: the mean over the texts (for a role: over the texts where it is defined)."""
        return readonly(_nan_reduce(np.nanmean, self.per_text[name]))

    def spread(self, name: str) -> np.ndarray:
        """[n_layers, n_heads]: the standard deviation over the texts (population; roles: where defined)."""
        return readonly(_nan_reduce(np.nanstd, self.per_text[name]))

    def n_defined(self, name: str) -> int:
        """How many texts a statistic is defined on (all of them, except for roles on texts without repeats)."""
        return int((~np.isnan(self.per_text[name][:, 0, 0])).sum())

    def storages(self) -> dict[int, int]:
        return _storages([*self.per_text.values(), self.n_tokens, self.truncated])


@dataclass(frozen=True)
class JointQK:
    """One head's queries and keys (after rotary) at every token of the corpus, text by text."""

    layer: int
    head: int
    q: np.ndarray  # float32 [N, d_head]
    k: np.ndarray  # float32 [N, d_head]: the key head this query head reads
    text: np.ndarray  # int [N], each row's text id
    position: np.ndarray  # int [N], its position in that text
    token_id: np.ndarray  # int [N]
    causal: bool

    def storages(self) -> dict[int, int]:
        return _storages([self.q, self.k, self.text, self.position, self.token_id])


def stats_bytes(n_layers: int, n_heads: int, n_texts: int) -> int:
    """What a CorpusStats keeps."""
    return len(NAMES) * n_texts * n_layers * n_heads * 4 + n_texts * 9


def qk_bytes(d_head: int, n_tokens: int) -> int:
    """What a JointQK keeps."""
    return n_tokens * (2 * d_head * 4 + 3 * 8)


def work_bytes(model: Model, max_batch_tokens: int, longest: int) -> int:
    """A batch's peak working memory while it runs in this process: one layer's activations and the patterns of
    every head of the batch, × 4 for the temporaries around them, + 128 MB. SmolLM2 at 2,048 tokens a batch, 64 a
    text: 578 MiB, against a measured peak RSS rise of 538 MB for a whole first job in a process (bench_corpus.py,
    busy machine)."""
    cfg = model.config
    activations = max_batch_tokens * (6 * cfg.d_model + 3 * cfg.d_mlp + 4 * cfg.n_heads * cfg.d_head)
    patterns = max_batch_tokens * longest * cfg.n_heads * (2 + len(ROLES))
    return 4 * 4 * (activations + patterns) + (128 << 20)


def corpus_stats(model: Model, corpus: Corpus, max_tokens: int = 64, *, causal: bool | None = None,
                 progress: Progress | None = None, cancel: Callable[[], bool] | None = None,
                 ray_address: str | None = None, model_name: str | None = None,
                 load_options: dict | None = None, max_batch: int = MAX_BATCH) -> CorpusStats:
    """Per-text statistics (STATS) and role scores (ROLES) of every head, every head on; texts cut to max_tokens.
    ray_address: run the batches on that Ray cluster, whose workers load `model_name` (default: the model's
    config name) with load_options; progress(texts done, texts in all) after each batch; cancel() asked before
    each batch."""
    tokens = tokenize(model, corpus, max_tokens)
    causal = model.config.causal if causal is None else bool(causal)
    results = _run(model, tokens, causal, True, None, progress, cancel, ray_address, model_name, load_options,
                   max_batch)
    cfg = model.config
    per_text = {name: np.empty((len(corpus), cfg.n_layers, cfg.n_heads), dtype=np.float32) for name in NAMES}
    for result in results:
        for name in NAMES:
            per_text[name][result.texts] = result.stats[name]
    return CorpusStats(per_text=MappingProxyType({name: readonly(a) for name, a in per_text.items()}),
                       n_tokens=readonly(np.array(tokens.lengths, dtype=np.int64)), truncated=tokens.truncated,
                       causal=causal)


def corpus_qk(model: Model, corpus: Corpus, layer: int, head: int, max_tokens: int = 64, *,
              causal: bool | None = None, progress: Progress | None = None, cancel: Callable[[], bool] | None = None,
              ray_address: str | None = None, model_name: str | None = None,
              load_options: dict | None = None, max_batch: int = MAX_BATCH) -> JointQK:
    """The queries and keys of head (layer, head) at every token of every text; only layers 0..layer run."""
    cfg = model.config
    if not (isinstance(layer, int) and 0 <= layer < cfg.n_layers and isinstance(head, int)
            and 0 <= head < cfg.n_heads):
        raise InputError(f"head {layer}.{head} does not exist: layers 0..{cfg.n_layers - 1}, heads "
                         f"0..{cfg.n_heads - 1}.")
    tokens = tokenize(model, corpus, max_tokens)
    causal = cfg.causal if causal is None else bool(causal)
    results = _run(model, tokens, causal, False, (layer, head), progress, cancel, ray_address, model_name,
                   load_options, max_batch)
    by_text: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for result in results:
        start = 0
        for text in result.texts:
            n = len(tokens.token_ids[text])
            by_text[int(text)] = (result.qk[0][start: start + n], result.qk[1][start: start + n])
            start += n
    order = range(len(corpus))
    lengths = tokens.lengths
    return JointQK(layer=layer, head=head, q=readonly(np.concatenate([by_text[t][0] for t in order])),
                   k=readonly(np.concatenate([by_text[t][1] for t in order])),
                   text=readonly(np.repeat(np.arange(len(corpus)), lengths)),
                   position=readonly(np.concatenate([np.arange(n) for n in lengths])),
                   token_id=readonly(np.concatenate([np.array(ids, dtype=np.int64) for ids in tokens.token_ids])),
                   causal=causal)


def _run(model: Model, tokens: Tokenized, causal: bool, stats: bool, qk_head: tuple[int, int] | None,
         progress: Progress | None, cancel: Callable[[], bool] | None, ray_address: str | None,
         model_name: str | None, load_options: dict | None, max_batch: int) -> list[BatchResult]:
    groups = batches(tokens.lengths, causal, max_batch=max_batch)
    jobs = [(group, [tokens.token_ids[i] for i in group]) for group in groups]
    total = len(tokens.token_ids)
    if ray_address:
        from .on_ray import run_on_ray

        return run_on_ray(ray_address, model_name or model.config.name, load_options or {}, jobs, causal, stats,
                          qk_head, progress, cancel)
    results, done = [], 0
    for texts, ids in jobs:
        if cancel is not None and cancel():
            raise RunCancelled(f"the corpus run was cancelled after {done:,} of {total:,} texts.")
        results.append(run_batch(model, texts, ids, causal, stats, qk_head))
        done += len(texts)
        if progress is not None:
            progress(done, total)
    return results


def _nan_reduce(reduce, values: np.ndarray) -> np.ndarray:
    if np.isnan(values).all(axis=0).any():  # a role no text defines: NaN without numpy's warning
        out = np.full(values.shape[1:], np.nan)
        defined = ~np.isnan(values).all(axis=0)
        out[defined] = reduce(values[:, defined], axis=0)
        return out
    return reduce(values.astype(np.float64), axis=0)


def _storages(arrays: Sequence[np.ndarray]) -> dict[int, int]:
    return {id(a): a.nbytes for a in arrays}
