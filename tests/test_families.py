"""Parity of the one forward pass with transformers (eager attention, float32) for every added family, on both
attention paths, and greedy generation equal to transformers' generate."""

from __future__ import annotations

import pytest
import torch
from families import CASES, build

import engine

TEXT = "The quick brown fox jumps over the lazy dog because it was bored"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """case -> (Hugging Face model, engine model), each built once for this module."""
    cache = {}

    def get(case: str):
        if case not in cache:
            folder = tmp_path_factory.mktemp(case)
            hf = build(case, folder)
            cache[case] = hf, engine.load(str(folder), device="cpu")
        return cache[case]

    return get


def relative(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).abs().max() / theirs.abs().max())


@pytest.mark.parametrize("attention", ["fused", "explicit"])
@pytest.mark.parametrize("case", list(CASES))
def test_family_matches_transformers(case, attention, built):
    hf, model = built(case)
    trace = model.run(TEXT, attention=attention)
    assert trace.n_tokens > 8  # longer than every window of the cases
    with torch.no_grad():
        out = hf(torch.tensor([trace.token_ids]), output_attentions=True, output_hidden_states=True)
    n_layers = model.config.n_layers
    ours = [trace["resid_pre", layer] for layer in range(n_layers)] + [trace.resid_final]
    for layer, (mine, theirs) in enumerate(zip(ours, out.hidden_states, strict=True)):
        assert relative(mine, theirs[0]) < 1e-5, (case, layer)
    for layer, theirs in enumerate(out.attentions):
        assert (trace["pattern", layer] - theirs[0]).abs().max() < 1e-5, (case, layer)
    assert relative(trace.logits, out.logits[0]) < 1e-5


@pytest.mark.parametrize("case", [c for c in CASES if c != "gpt_neox_sequential"])
def test_family_generates_as_transformers(case, built):
    hf, model = built(case)
    ours = model.generate(TEXT, max_new_tokens=6)
    prompt = torch.tensor([ours.token_ids[:ours.n_prompt]])
    with torch.no_grad():
        theirs = hf.generate(prompt, max_new_tokens=6, do_sample=False, attention_mask=torch.ones_like(prompt))
    new = theirs[0, ours.n_prompt:].tolist()
    assert list(ours.new_ids) == new[:len(ours.new_ids)]
    assert ours.stopped_at_eos or len(ours.new_ids) == 6
    # the generation's trace (built step by step with the cache) is the trace of the whole sequence
    again = model.run_ids(ours.token_ids)
    for layer in range(model.config.n_layers):
        assert (ours.trace["pattern", layer] - again["pattern", layer]).abs().max() < 1e-5
