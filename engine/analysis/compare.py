"""Two contexts side by side: how differently each head treats a target token, and activation patching.

A and B are runs of the same model with a target position in each (e.g. "mole" in an animal and in a
chemistry sentence). Patching carries A's z (a head's pattern @ v, before W_O) at A's target into B's run at
B's target, for a layer's heads at once or one head at a time, and measures how far that moves B:

- gap closed: (cos(B_patched, A) − cos(B, A)) / (1 − cos(B, A)), with each vector the target's output of the
  last block (resid_post of the last layer): 0 = no change, 1 = B's target became A's direction;
- log-prob change (causal models with an LM head): log p_patched(token | B up to its target) − log p(token | B),
  for a chosen token id (default: A's top prediction after its target).

A patch in layer l computes only layers l and on: B's earlier layers are reused. By default the patched
runs go as batches in one pass over the layers (engine.batch), and under a causal mask only B's target
position is computed (nothing before it changes, nothing after it can reach it). A `run` callable (patch ->
B's patched trace, e.g. `default_run`, which uses `reuse=`) routes each run through the app's cache instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..arrays import readonly
from ..batch import run_variants
from ..errors import InputError
from ..model import Model
from ..trace import Trace
from ..transformer import final_norm, unembed
from .senses import head_out_at

PatchDict = dict[tuple[int, int], dict[int, torch.Tensor]]
Run = Callable[[PatchDict], Trace]  # B's run with this patch
Progress = Callable[[int, int], None]  # (work done, work in all)


def _cosine(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cosine similarity over the last dimension (float64); NaN where either vector is zero."""
    x, y = x.double(), y.double()
    norms = x.norm(dim=-1) * y.norm(dim=-1)
    return torch.where(norms > 0, (x * y).sum(-1) / norms.clamp_min(1e-300), torch.nan)


def _position(trace: Trace, target: int, name: str) -> int:
    if not isinstance(target, int | np.integer) or not -trace.n_tokens <= target < trace.n_tokens:
        raise InputError(f"target {name} {target!r} is not a token position 0..{trace.n_tokens - 1}.")
    return int(target) % trace.n_tokens


def _check_pair(a: Trace, target_a: int, b: Trace, target_b: int) -> tuple[int, int]:
    if a._weights is not b._weights:
        raise InputError("the two runs come from different models.")
    return _position(a, target_a, "A"), _position(b, target_b, "B")


def head_distances(a: Trace, target_a: int, b: Trace, target_b: int) -> np.ndarray:
    """[n_layers, n_heads]: 1 − cos(A's head_out at its target, B's head_out at its target); NaN where a head
    writes nothing (switched off)."""
    target_a, target_b = _check_pair(a, target_a, b, target_b)
    rows = [1 - _cosine(head_out_at(a, layer, target_a), head_out_at(b, layer, target_b))
            for layer in range(a.config.n_layers)]
    return readonly(torch.stack(rows))


def layer_similarity(a: Trace, target_a: int, b: Trace, target_b: int) -> np.ndarray:
    """[n_layers + 1]: cosine of the target's residual-stream vectors of A and B: the embedding, then each
    block's output (as in the word-senses similarity)."""
    target_a, target_b = _check_pair(a, target_a, b, target_b)
    return readonly(_cosine(a.residual_stream()[:, target_a], b.residual_stream()[:, target_b]))


def patch_from(a: Trace, target_a: int, target_b: int, heads: Iterable[tuple[int, int]]) -> PatchDict:
    """{(layer, head): {target_b: A's z of that head at target_a}}: the patch that carries A's heads into B."""
    patch: PatchDict = {}
    for layer, head in heads:
        patch[(layer, head)] = {target_b: a["z", layer, head][target_a]}
    return patch


def _with_own_patch(b: Trace, patch: PatchDict) -> PatchDict:
    """B's own patch (if it had one) with `patch` on top."""
    merged: PatchDict = {(layer, head): dict(at) for layer, heads in b.patch.items() for head, at in heads.items()}
    for key, at in patch.items():
        merged.setdefault(key, {}).update(at)
    return merged


def default_run(model: Model, b: Trace) -> Run:
    """B's tokens, mask, head switches and attention path with a patch, reusing B's unchanged layers."""
    def run(patch: PatchDict) -> Trace:
        return model.run_ids(b.token_ids, causal=b.causal, head_mask=b.head_mask, patch=_with_own_patch(b, patch),
                             reuse=b, attention=b.attention)
    return run


@dataclass(frozen=True)
class Sweep:
    """The effect of each patch of a sweep; cells are layers [n_layers], heads of one layer [n_heads] or every
    head [n_layers, n_heads]."""

    cells: tuple[tuple[tuple[int, int], ...], ...]  # flat, in order: the (layer, head) pairs of each patch
    gap_closed: np.ndarray  # fraction of the A/B gap closed at B's target (NaN when cos(B, A) is 1)
    logprob_change: np.ndarray | None  # change of log p(token_id) at B's target; None without a causal LM
    token_id: int | None  # the token whose log-prob is followed
    base_cos: float  # cos(B, A) at the targets, last block's output, before patching
    base_logprob: float | None  # log p(token_id) at B's target before patching

    def storages(self) -> Iterator[tuple[int, int]]:
        """(id, bytes) of the arrays it holds, so a run cache can count it (engine/serving/cache.py)."""
        for values in (self.gap_closed, self.logprob_change):
            if values is not None:
                yield id(values), values.nbytes


def _logprobs(trace: Trace, resid_last: torch.Tensor, token_id: int, block: int = 64) -> torch.Tensor:
    """log p(token_id) from last-block outputs [c, d_model] of runs of `trace`'s model: [c] float64."""
    w, cfg = trace._weights, trace.config
    out = []
    for rows in resid_last.split(block):
        logits = unembed(final_norm(rows, w, cfg), w, cfg).double()  # [r, d_vocab]
        out.append(torch.log_softmax(logits, dim=-1)[:, token_id])
    return torch.cat(out)


def _followed_token(a: Trace, target_a: int, b: Trace, token_id: int | None) -> int | None:
    """The token whose log-prob the sweep follows: None without a causal LM, else token_id or A's top prediction."""
    if not b.causal or b._weights.unembed is None:
        return None
    if token_id is None:
        return int(a.logits_at(target_a).argmax())
    if not isinstance(token_id, int | np.integer) or not 0 <= token_id < b.config.d_vocab:
        raise InputError(f"token id {token_id!r} is not in the vocabulary 0..{b.config.d_vocab - 1}.")
    return int(token_id)


def _variant(a: Trace, target_a: int, target_b: int, heads: Sequence[tuple[int, int]], index: int
             ) -> tuple[int, dict[int, dict[int, torch.Tensor]]]:
    """(layer, {head: {target_b: A's z}}) for a cell that patches heads of one layer."""
    layers = {layer for layer, _ in heads}
    if len(layers) != 1:
        raise InputError(f"sweep cell {index} must patch heads of exactly one layer, not layers {sorted(layers)}.")
    layer = layers.pop()
    return layer, {head: {target_b: a["z", layer, head][target_a]} for _, head in heads}


def patched_targets(a: Trace, target_a: int, b: Trace, target_b: int, cells: Sequence[Sequence[tuple[int, int]]],
                    progress: Progress | None = None, run: Run | None = None, max_batch_tokens: int = 4096
                    ) -> torch.Tensor:
    """B's target after the last block, [len(cells), d_model], with each cell's heads carrying A's z.

    Without `run`: batches of up to max_batch_tokens computed tokens, one pass over the layers each
    (engine.batch); under a causal mask only B's target position is computed. With `run`: one trace per cell.
    progress(done, total) counts layers run, summed over the cells."""
    variants = [_variant(a, target_a, target_b, heads, i) for i, heads in enumerate(cells)]
    work = [a.config.n_layers - layer for layer, _ in variants]  # layers each patched run computes
    total, done = sum(work), 0
    out = torch.empty(len(cells), a.config.d_model, device=b.device, dtype=b.resid_last.dtype)
    if run is not None:
        for i, heads in enumerate(cells):
            out[i] = run(patch_from(a, target_a, target_b, heads)).resid_last[target_b]
            done += work[i]
            if progress is not None:
                progress(done, total)
        return out
    positions = slice(target_b, target_b + 1) if b.causal else slice(None)
    size = max(1, max_batch_tokens // (1 if b.causal else b.n_tokens))
    for first in range(0, len(cells), size):
        chunk = slice(first, first + size)
        out[chunk] = run_variants(b, variants[chunk], positions)[:, -1 if b.causal else target_b]
        done += sum(work[chunk])
        if progress is not None:
            progress(done, total)
    return out


def sweep(a: Trace, target_a: int, b: Trace, target_b: int, cells: Iterable[Iterable[tuple[int, int]]],
          shape: tuple[int, ...], token_id: int | None = None, progress: Progress | None = None,
          run: Run | None = None) -> Sweep:
    """Patch A's z at its target into B at its target, one patched run per cell (heads of one layer), and
    measure each run's effects (see the module docstring). run: B's patched run for a patch, e.g.
    `default_run(model, b)` or the app's cached runs; without it the runs go as batches (`patched_targets`)."""
    target_a, target_b = _check_pair(a, target_a, b, target_b)
    cells = tuple(tuple(cell) for cell in cells)
    outputs = patched_targets(a, target_a, b, target_b, cells, progress, run)  # [c, d_model]
    reference = a.resid_last[target_a]  # [d_model]
    base_cos = float(_cosine(b.resid_last[target_b], reference))
    cos = _cosine(outputs, reference)  # [c]
    gap = (cos - base_cos) / (1 - base_cos) if base_cos < 1 else torch.full_like(cos, torch.nan)
    token = _followed_token(a, target_a, b, token_id)
    change, base_logprob = None, None
    if token is not None:
        base_logprob = float(_logprobs(b, b.resid_last[target_b][None], token)[0])
        change = readonly((_logprobs(b, outputs, token) - base_logprob).reshape(shape))
    return Sweep(cells=cells, gap_closed=readonly(gap.reshape(shape)), logprob_change=change, token_id=token,
                 base_cos=base_cos, base_logprob=base_logprob)


def sweep_layers(a: Trace, target_a: int, b: Trace, target_b: int, token_id: int | None = None,
                 progress: Progress | None = None, run: Run | None = None) -> Sweep:
    """One patch per layer, all of the layer's heads at once: effects [n_layers]."""
    cfg = a.config
    cells = [[(layer, head) for head in range(cfg.n_heads)] for layer in range(cfg.n_layers)]
    return sweep(a, target_a, b, target_b, cells, (cfg.n_layers,), token_id, progress, run)


def sweep_heads(a: Trace, target_a: int, b: Trace, target_b: int, layer: int, token_id: int | None = None,
                progress: Progress | None = None, run: Run | None = None) -> Sweep:
    """One patch per head of `layer`: effects [n_heads]."""
    cfg = a.config
    if not isinstance(layer, int) or not 0 <= layer < cfg.n_layers:
        raise InputError(f"layer {layer!r} is out of range 0..{cfg.n_layers - 1}.")
    cells = [[(layer, head)] for head in range(cfg.n_heads)]
    return sweep(a, target_a, b, target_b, cells, (cfg.n_heads,), token_id, progress, run)


def sweep_all_heads(a: Trace, target_a: int, b: Trace, target_b: int, token_id: int | None = None,
                    progress: Progress | None = None, run: Run | None = None) -> Sweep:
    """One patch per head of every layer: effects [n_layers, n_heads]."""
    cfg = a.config
    cells = [[(layer, head)] for layer in range(cfg.n_layers) for head in range(cfg.n_heads)]
    return sweep(a, target_a, b, target_b, cells, (cfg.n_layers, cfg.n_heads), token_id, progress, run)
