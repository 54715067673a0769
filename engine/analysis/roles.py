"""Head roles: how much of each head's attention lands where a known role says it should, on one probe run.

The standard probe (TransformerLens' head detector and induction tests): the tokens the tokenizer puts
before a text (BERT's [CLS]; none for SmolLM2), then `length` distinct random ordinary tokens fixed by a
seed, the same tokens again, then the tokens the tokenizer puts after a text (BERT's [SEP]; none for SmolLM2).

For a role, each query position i has a set of target keys (positions index the token ids, specials
included):

    previous_token   {i − 1}                              for i ≥ 1
    first_token      {0}                                  for i ≥ 1
    self             {i}
    duplicate_token  {j < i : id_j = id_i}
    induction        {j + 1 : j + 1 < i and id_j = id_i}  (the token after an earlier copy of the query's token)

A head's score is the mean, over the query positions whose target set is not empty, of the pattern weight
summed over the targets; NaN when no position has a target (`defined` is False then). The definitions only
look backwards. Under a bidirectional mask (MiniLM) a head also sees later keys: "previous" is still the key
just before the query, and duplicate and induction still count only earlier copies, so a head that attends
to a later copy of its token scores nothing for it. A switched-off head keeps its pattern (it only writes
nothing): its score is that pattern's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType

import numpy as np
import torch

from ..arrays import readonly
from ..errors import InputError
from ..model import Model
from ..trace import Trace

ROLES = ("previous_token", "duplicate_token", "induction", "first_token", "self")
_PLACEHOLDER = re.compile(r"^\[.*\]$|^<.*>$")  # "[unused7]", "<|im_start|>": never ordinary text


@dataclass(frozen=True)
class Probe:
    """Token ids of a repeated random sequence, and where its two copies lie."""

    token_ids: tuple[int, ...]
    first: slice  # positions of the first copy
    second: slice  # positions of the second copy


@dataclass(frozen=True)
class HeadRoles(Mapping):
    """Role scores of every head on one run: a read-only Mapping role -> float [n_layers, n_heads] (`in`,
    iteration in ROLES order, keys(), items(), len; `roles["induction"]` is `roles.scores["induction"]`), with
    the run's other fields as attributes."""

    scores: Mapping[str, np.ndarray]  # role -> float [n_layers, n_heads], NaN where the role is not defined
    defined: Mapping[str, bool]  # role -> whether some query position has a target
    n_positions: Mapping[str, int]  # role -> how many query positions the mean runs over
    token_ids: tuple[int, ...]  # what the run saw
    trace: Trace  # the run the scores come from
    probe: Probe | None  # the standard probe, or None for given token ids

    def __getitem__(self, role: str) -> np.ndarray:
        return self.scores[role]

    def __iter__(self) -> Iterator[str]:
        return iter(self.scores)

    def __len__(self) -> int:
        return len(self.scores)

    def storages(self) -> Iterator[tuple[int, int]]:
        """(storage id, bytes) of what it holds: its probe run's tensors (the scores are a few KB), so a run cache
        counts it like a trace (engine/serving/cache.py)."""
        yield from self.trace.storages()
        for scores in self.scores.values():
            yield id(scores), scores.nbytes


def special_ends(model: Model) -> tuple[list[int], list[int]]:
    """(leading, trailing): the special token ids the tokenizer puts before and after a text."""
    ids, _, _ = model.tokenize("a")
    special = model.special_ids
    n_lead = next((k for k, i in enumerate(ids) if i not in special), len(ids))
    n_trail = next((k for k, i in enumerate(reversed(ids)) if i not in special), len(ids))
    return ids[:n_lead], ids[len(ids) - n_trail:]


def standard_probe(model: Model, seed: int = 0, length: int = 50) -> Probe:
    """Leading specials + `length` distinct random ordinary tokens (fixed by `seed`) twice + trailing specials.
    Ordinary: not a special token and not a placeholder such as BERT's "[unused7]"."""
    lead, trail = special_ends(model)
    if not isinstance(length, int) or length < 1:
        raise InputError(f"the probe length must be a positive whole number, not {length!r}.")
    if len(lead) + 2 * length + len(trail) > model.config.max_tokens:
        raise InputError(f"a probe of 2 × {length} tokens exceeds {model.config.name}'s context of "
                         f"{model.config.max_tokens}.")
    generator = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(model.config.d_vocab, generator=generator).tolist()
    special, chosen = model.special_ids, []
    for token_id in order:  # in random order, the first `length` ordinary ids
        token = model.tokenizer.convert_ids_to_tokens(token_id)
        if token_id not in special and token and not _PLACEHOLDER.match(token):
            chosen.append(token_id)
            if len(chosen) == length:
                break
    start = len(lead)
    return Probe(token_ids=tuple(lead + chosen + chosen + trail), first=slice(start, start + length),
                 second=slice(start + length, start + 2 * length))


def role_targets(token_ids: Sequence[int] | torch.Tensor, rows: slice) -> dict[str, torch.Tensor]:
    """Each role's target keys for the query positions in `rows`: bool [r, n] per role."""
    ids = torch.as_tensor(list(token_ids), dtype=torch.long)  # [n]
    n = len(ids)
    query = torch.arange(n)[rows][:, None]  # [r, 1]
    key = torch.arange(n)[None, :]  # [1, n]
    before = torch.cat([torch.tensor([-1]), ids[:-1]])  # [n], the id just before each key (-1 for key 0)
    same = ids[query] == ids[key]  # [r, n]
    return {
        "previous_token": key == query - 1,
        "duplicate_token": same & (key < query),
        "induction": (before[key] == ids[query]) & (key >= 1) & (key < query),
        "first_token": (key == 0) & (query >= 1),
        "self": key == query,
    }


def role_scores(trace: Trace) -> HeadRoles:
    """Role scores from a trace's patterns, one block of query rows of one layer at a time."""
    cfg = trace.config
    sums = {role: np.zeros((cfg.n_layers, cfg.n_heads)) for role in ROLES}
    counts = dict.fromkeys(ROLES, 0)
    for rows in trace.row_blocks(n_heads=cfg.n_heads):
        targets = {role: t.to(trace.device) for role, t in role_targets(trace.token_ids, rows).items()}  # [r, n]
        for role in ROLES:
            counts[role] += int(targets[role].any(-1).sum())
        for layer in range(cfg.n_layers):
            pattern = trace.pattern_rows(layer, rows)  # [n_heads, r, n]
            for role in ROLES:
                on_target = (pattern * targets[role]).sum(-1, dtype=torch.float64)  # [n_heads, r]; 0 without targets
                sums[role][layer] += on_target.sum(-1).cpu().numpy()
    scores = {role: readonly(sums[role] / counts[role] if counts[role] else np.full_like(sums[role], math.nan))
              for role in ROLES}
    return HeadRoles(scores=MappingProxyType(scores), defined=MappingProxyType({r: counts[r] > 0 for r in ROLES}),
                     n_positions=MappingProxyType(counts), token_ids=trace.token_ids, trace=trace, probe=None)


def head_roles(model: Model, token_ids: Sequence[int] | None = None, seed: int = 0, length: int = 50,
               causal: bool | None = None, head_mask: torch.Tensor | None = None) -> HeadRoles:
    """Role scores of every head from one forward pass of `token_ids` (default: the standard probe)."""
    probe = standard_probe(model, seed, length) if token_ids is None else None
    ids = probe.token_ids if probe is not None else token_ids
    trace = model.run_ids(ids, causal=causal, head_mask=head_mask)
    return replace(role_scores(trace), probe=probe)


def strongest_roles(scores: Mapping[str, np.ndarray], threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Each head's strongest role among ROLES where its score reaches `threshold` (ties: the earlier role).

    Returns (role, score): int [n_layers, n_heads], an index into ROLES or −1 where no role reaches the
    threshold; float [n_layers, n_heads], that role's score, NaN where none. NaN scores (a role not defined on
    the run) never count."""
    stacked = np.stack([np.nan_to_num(np.asarray(scores[role], dtype=np.float64), nan=-np.inf) for role in ROLES])
    best = stacked.argmax(0)  # [n_layers, n_heads]
    score = np.take_along_axis(stacked, best[None], 0)[0]
    reached = score >= threshold
    return readonly(np.where(reached, best, -1)), readonly(np.where(reached, score, math.nan))
