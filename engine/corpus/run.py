"""Many texts through the one forward pass, a batch at a time, reduced to per-text, per-head numbers.

Texts are sorted by length and cut into batches of similar length. Under a causal mask a batch is padded on the
right to its longest text: no real position can see a padded one, so every real position computes exactly what
a run of its text alone computes. Under a bidirectional mask a batch holds texts of one length only (no padding
at all). Each batch runs `transformer.block` with a leading batch dimension; per layer the pattern of every
head is formed from the batch's q and k, reduced to the per-text statistics of `analysis.head_stats.row_stats`
and the role scores of `analysis.roles.role_targets`, and dropped. Nothing of a batch is kept but those numbers
and, when asked for, the queries and keys of one head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..analysis.head_stats import row_stats
from ..analysis.roles import ROLES, role_targets
from ..model import Model
from ..transformer import block, embed, explicit_pattern, layer_ropes

STATS = ("entropy", "first", "previous", "self", "distance")
MAX_BATCH = 64  # texts per batch
MAX_BATCH_TOKENS = 2_048  # padded tokens per batch (B × longest): bounds a batch's activations and patterns


def batches(lengths: Sequence[int], causal: bool, max_batch: int = MAX_BATCH,
            max_batch_tokens: int = MAX_BATCH_TOKENS) -> list[list[int]]:
    """Text indices grouped into batches: sorted by length (then index), consecutive, at most max_batch texts
    and max_batch_tokens padded tokens each; without a causal mask only texts of one length share a batch."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    out: list[list[int]] = []
    for i in order:
        if out:
            current = out[-1]
            longest = max(lengths[current[-1]], lengths[i])  # sorted: the newest is the longest
            fits = len(current) < max_batch and (len(current) + 1) * longest <= max_batch_tokens
            if fits and (causal or lengths[current[0]] == lengths[i]):
                current.append(i)
                continue
        out.append([i])
    return out


@dataclass(frozen=True)
class BatchResult:
    """Numbers of the texts of one batch, in the batch's order."""

    texts: np.ndarray  # int [B], the texts' ids
    stats: dict[str, np.ndarray]  # name -> float32 [B, n_layers, n_heads]: STATS, then ROLES (NaN: not defined)
    qk: tuple[np.ndarray, np.ndarray] | None  # q, k float32 [n_tokens of the batch, d_head], text by text


def run_batch(model: Model, texts: Sequence[int], token_ids: Sequence[Sequence[int]], causal: bool,
              stats: bool = True, qk_head: tuple[int, int] | None = None) -> BatchResult:
    """Run the texts (ids `texts`, tokens `token_ids`) as one batch; every head on. stats: the per-text head
    statistics and role scores of every layer; qk_head=(layer, head): that head's queries and keys (after
    rotary) at every real position. Without stats only the layers up to qk_head's are run."""
    with torch.inference_mode():
        return _run_batch(model, texts, token_ids, causal, stats, qk_head)


def _run_batch(model: Model, texts, token_ids, causal: bool, stats: bool, qk_head) -> BatchResult:
    cfg, w, device = model.config, model._weights, model.device
    lengths = torch.tensor([len(ids) for ids in token_ids])  # [B]
    B, m = len(token_ids), int(lengths.max())
    padded = torch.zeros(B, m, dtype=torch.long)
    for b, ids in enumerate(token_ids):
        padded[b, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    x = torch.stack([embed(row, w, cfg) for row in padded.to(device)])  # [B, m, d_model]
    position = torch.arange(m, device=device)
    ropes = layer_ropes(cfg, position)  # each layer's rotation (None without rotary)
    real = (position[None, :] < lengths.to(device)[:, None]).to(x.dtype)  # [B, m]: 1 at real query rows
    targets = _targets(token_ids, m, device) if stats else {}  # role -> [B, m, m]
    counts = {role: t.any(-1).sum(-1).cpu() for role, t in targets.items()}  # [B]: rows with targets
    n_rows = {name: lengths.clamp_min(1).to(torch.float64) for name in STATS}
    n_rows["previous"] = (lengths - 1).clamp_min(1).to(torch.float64)
    sums = {name: torch.zeros(B, cfg.n_layers, cfg.n_heads, dtype=torch.float64) for name in STATS + ROLES}
    heads_on = torch.ones(cfg.n_heads, device=device, dtype=x.dtype)
    last = cfg.n_layers - 1 if stats else qk_head[0]
    qk = None
    for layer in range(last + 1):
        record: dict[str, torch.Tensor] = {}
        x = block(x, w.blocks[layer], cfg, causal, heads_on, ropes[layer], {}, "fused", record=record, layer=layer)
        q = record["q"]  # [B, n_heads, m, d_head]
        k = record["k_kv"].repeat_interleave(cfg.n_heads // cfg.n_kv_heads, dim=1)  # [B, n_heads, m, d_head]
        if qk_head is not None and layer == qk_head[0]:
            qk = _real_rows(q[:, qk_head[1]], lengths), _real_rows(k[:, qk_head[1]], lengths)
        if not stats:
            continue
        pattern = explicit_pattern(q, k, causal, scale=cfg.attn_scale, window=cfg.window(layer),
                                   softcap=cfg.attn_softcap).float()  # [B, n_heads, m, m]; padded keys: 0 (causal)
        per_row = row_stats(pattern, position)  # name -> [B, n_heads, m]
        for name in STATS:
            sums[name][:, layer] = (per_row[name] * real[:, None]).sum(-1).double().cpu()
        for role, on in targets.items():
            sums[role][:, layer] = (pattern * on[:, None]).sum((-1, -2), dtype=torch.float64).cpu()
    out = {}
    for name in STATS:
        out[name] = (sums[name] / n_rows[name][:, None, None]).float().numpy()
    for role in targets:
        count = counts[role].to(torch.float64)[:, None, None]
        out[role] = torch.where(count > 0, sums[role] / count.clamp_min(1), torch.nan).float().numpy()
    return BatchResult(texts=np.asarray(texts, dtype=np.int64), stats=out, qk=qk)


def _targets(token_ids: Sequence[Sequence[int]], m: int, device) -> dict[str, torch.Tensor]:
    """Each role's target keys of every text, padded: role -> float [B, m, m] (0 beyond a text's length)."""
    out = {role: torch.zeros(len(token_ids), m, m, device=device) for role in ROLES}
    for b, ids in enumerate(token_ids):
        n = len(ids)
        for role, t in role_targets(ids, slice(0, n)).items():
            out[role][b, :n, :n] = t.to(device)
    return out


def _real_rows(x: torch.Tensor, lengths: torch.Tensor) -> np.ndarray:
    """x [B, m, d] -> [Σ lengths, d] float32: each text's real positions, text by text."""
    return torch.cat([x[b, : int(n)] for b, n in enumerate(lengths)]).float().cpu().numpy()
