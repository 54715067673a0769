"""Generations through the server's shared runs (engine/serving/generation.py): the same tokens as
model.generate, cached and counted against the memory budget like any run, the tokens written so far visible to a
waiting visitor, bad settings refused before anything is reserved, a run nobody waits for stopped."""

from __future__ import annotations

import time

import pytest

import engine
from engine.serving.cache import RunCache
from engine.serving.generation import GenerateSettings, Progress, generation_key, get_generation
from engine.serving.memory import run_bytes

PROMPT = "The mole dug a tunnel under"


def test_a_generation_is_cached_counted_and_shows_its_progress(smollm):
    cache, progress = RunCache(budget_bytes=4 << 30), Progress()
    seen: list[tuple[int, ...]] = []
    settings = GenerateSettings(12, temperature=1.1, top_k=40, seed=3)
    gen = get_generation(cache, progress, smollm, PROMPT, settings, heads_off={(0, 1)},
                         on_wait=lambda w, written: seen.append(written))
    alone = smollm.generate(PROMPT, max_new_tokens=12, temperature=1.1, top_k=40, seed=3,
                            head_mask=smollm.head_mask_without({(0, 1)}))
    assert gen.token_ids == alone.token_ids and gen.steps == alone.steps
    assert cache.runs_started == 1 and cache.nbytes == gen.trace.nbytes() > 0  # counted as the trace it holds
    assert get_generation(cache, progress, smollm, PROMPT, settings, heads_off={(0, 1)}) is gen  # cached
    assert cache.runs_started == 1
    key = generation_key(smollm, PROMPT, settings, {(0, 1)}, None)
    assert progress.written(key) == gen.new_ids  # every token, in order
    assert seen and all(gen.new_ids[: len(w)] == w for w in seen)  # what a waiting visitor saw: a prefix
    assert generation_key(smollm, PROMPT, settings, (), None) != key


def test_the_reservation_covers_prompt_and_new_tokens(smollm):
    n_prompt = len(smollm.tokenize(PROMPT)[0])
    need = run_bytes(smollm.config, n_prompt + 20)
    with pytest.raises(engine.BudgetExceeded):  # a budget just under the reservation refuses it
        get_generation(RunCache(budget_bytes=need - 1), Progress(), smollm, PROMPT, GenerateSettings(20))
    gen = get_generation(RunCache(budget_bytes=need), Progress(), smollm, PROMPT, GenerateSettings(20))
    assert gen.trace.nbytes() < need


@pytest.mark.parametrize(("settings", "message"), [
    (GenerateSettings(0), "max_new_tokens must be a whole number from 1 to"),
    (GenerateSettings(4, temperature=-1.0), "temperature must be a finite number ≥ 0"),
    (GenerateSettings(4, temperature=1.0, top_k=0), "top_k must be None or a whole number from 1 to 49152"),
])
def test_bad_settings_are_refused_before_anything_runs(smollm, settings, message):
    cache = RunCache(budget_bytes=4 << 30)
    with pytest.raises(engine.InputError, match=message):
        get_generation(cache, Progress(), smollm, PROMPT, settings)
    assert cache.runs_started == 0


def test_an_encoder_is_refused_before_anything_runs(minilm):
    cache = RunCache(budget_bytes=4 << 30)
    with pytest.raises(engine.InputError, match="minilm-l6 is an encoder"):
        get_generation(cache, Progress(), minilm, PROMPT, GenerateSettings(4))
    assert cache.runs_started == 0


def test_a_generation_nobody_waits_for_stops(smollm):
    cache, progress = RunCache(budget_bytes=4 << 30, poll_s=0.05), Progress()
    settings = GenerateSettings(200)
    key = generation_key(smollm, PROMPT, settings, (), None)

    def give_up(w, written):
        if written:
            raise KeyboardInterrupt  # what Streamlit does when the visitor asks for something else

    with pytest.raises(KeyboardInterrupt):
        get_generation(cache, progress, smollm, PROMPT, settings, on_wait=give_up)
    deadline = time.monotonic() + 30
    while cache.status().running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cache.status().running == 0 and len(cache) == 0  # stopped, nothing kept
    assert 0 < len(progress.written(key)) < 200
