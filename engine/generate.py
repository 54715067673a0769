"""Generation, one token at a time with a key/value cache, recording what the model saw at every step.

Each step runs only the new token through the blocks (its query against the cached keys and values), so
writing m tokens after an n-token prompt costs one n-token pass and m one-token passes. The records of all
passes, laid end to end, are the trace of the whole final sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from . import sampling
from .errors import InputError
from .sampling import choose
from .trace import Trace
from .transformer import KVCache, Record, forward, unembed

TOP = 10  # predictions kept per step
MAX_SEED = 2**64 - 1  # the largest seed torch.Generator takes


@dataclass(frozen=True)
class Step:
    """One generated token: the model's top predictions at that step and the token chosen."""

    position: int  # where the chosen token stands in token_ids
    token_id: int
    token: str  # readable
    prob: float  # the model's probability of the chosen token (temperature 1)
    top: tuple[tuple[int, str, float], ...]  # the TOP most likely (id, readable token, probability)


@dataclass(frozen=True)
class Generation:
    token_ids: tuple[int, ...]  # prompt and generated
    n_prompt: int
    tokens: tuple[str, ...]  # readable, prompt and generated
    steps: tuple[Step, ...]
    trace: Trace  # over the whole final sequence, equal to model.run_ids(token_ids, head_mask=...)
    stopped_at_eos: bool
    truncated: bool  # the prompt was cut to fit

    @property
    def new_ids(self) -> tuple[int, ...]:
        return self.token_ids[self.n_prompt:]

    def storages(self) -> Iterator[tuple[int, int]]:
        """(storage id, bytes) of the tensors it holds (its trace's): what a RunCache counts against its budget."""
        return self.trace.storages()


def check_settings(model, n_prompt: int, max_new_tokens, temperature, top_k, seed, limit: int) -> None:
    cfg = model.config
    if not cfg.causal or model._weights.unembed is None:
        raise InputError(f"{cfg.name} is an encoder (bidirectional, no next-token head): it cannot write text. "
                         "Generation needs a causal language model such as smollm2-135m.")
    room = limit - n_prompt
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or not 1 <= max_new_tokens <= room:
        if room < 1:
            raise InputError(f"the prompt already fills the context of {limit} tokens: no room to write.")
        raise InputError(f"max_new_tokens must be a whole number from 1 to {room} (the context left after the "
                         f"{n_prompt}-token prompt), not {max_new_tokens!r}.")
    sampling.check(temperature, top_k, None, cfg.d_vocab)
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED):
        raise InputError(f"seed must be None or a whole number from 0 to {MAX_SEED}, not {seed!r}.")


@torch.inference_mode()
def generate(model, text: str, max_new_tokens: int = 32, temperature: float = 0.0, top_k: int | None = None,
             seed: int | None = None, head_mask: torch.Tensor | None = None, max_tokens: int | None = None,
             on_token: Callable[[int, int], None] | None = None,
             cancel: Callable[[], bool] | None = None) -> Generation:
    """Write up to max_new_tokens after `text`, stopping after an end-of-text token.

    temperature 0 is greedy; otherwise tokens are sampled from softmax(logits / temperature), restricted to
    the top_k most likely when given, reproducibly for a given seed. head_mask switches heads off for the
    whole generation. on_token(step, token_id) is called as each token is chosen; cancel() is asked between
    steps and layers. max_tokens: the operator's limit on the whole sequence (prompt + new tokens)."""
    cfg = model.config
    ids, truncated, _ = model.tokenize(text, max_tokens)
    limit = min(cfg.max_tokens, max_tokens or cfg.max_tokens)
    check_settings(model, len(ids), max_new_tokens, temperature, top_k, seed, limit)
    head_mask = model.check_head_mask(head_mask)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    cache = KVCache(cfg, len(ids) + max_new_tokens, model.device, model.dtype)
    records: list[list[Record]] = []  # per pass, per layer
    finals, lasts = [], []
    new_ids: list[int] = []
    steps: list[Step] = []

    def run(chunk: list[int], offset: int) -> torch.Tensor:
        out = forward(model._weights, cfg, torch.tensor(chunk, device=model.device), True, head_mask, cache=cache,
                      offset=offset, cancel=cancel)
        records.append(out.records)
        lasts.append(out.resid_last)
        finals.append(out.resid_final)
        return unembed(out.resid_final[-1], model._weights, cfg).float()  # [d_vocab], the next token's logits

    logits = run(ids, 0)
    stopped = False
    for step in range(max_new_tokens):
        probs = torch.softmax(logits, dim=-1)
        top = probs.topk(TOP)
        token_id = choose(logits, temperature, top_k, generator)
        top_ids = top.indices.tolist()
        readable = model.readable(top_ids + [token_id])
        steps.append(Step(position=len(ids) + step, token_id=token_id, token=readable[-1],
                          prob=float(probs[token_id]),
                          top=tuple(zip(top_ids, readable[:-1], top.values.tolist(), strict=True))))
        new_ids.append(token_id)
        if on_token is not None:
            on_token(step, token_id)
        stopped = token_id in cfg.eos_token_ids
        logits = run([token_id], len(ids) + step)  # the new token's own activations, for the trace
        if stopped:
            break
    all_ids = ids + new_ids
    layers = [{name: torch.cat([p[layer][name] for p in records], dim=1 if name in ("q", "k_kv", "v_kv", "z") else 0)
               for name in records[0][layer]} for layer in range(cfg.n_layers)]
    trace = Trace.build(config=cfg, weights=model._weights, tokens=model.readable(all_ids), token_ids=all_ids,
                        causal=True, head_mask=head_mask, records=layers, resid_last=torch.cat(lasts),
                        resid_final=torch.cat(finals), truncated=truncated)
    return Generation(token_ids=tuple(all_ids), n_prompt=len(ids), tokens=trace.tokens, steps=tuple(steps),
                      trace=trace, stopped_at_eos=stopped, truncated=truncated)
