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


@pytest.mark.parametrize("case", ["gemma2", "gpt_neo", "qwen2", "gemma3_text"])
def test_windows_and_soft_caps_show_in_the_trace_as_the_model_computes_them(case, built):
    _, model = built(case)
    cfg = model.config
    trace = model.run(TEXT)
    n = trace.n_tokens
    assert any(cfg.windows)
    for layer in range(cfg.n_layers):
        pattern, scores = trace["pattern", layer], trace["scores", layer]  # [h, n, n]
        hidden = trace.masked(layer=layer)  # [n, n]
        window = cfg.window(layer)
        query, key = torch.arange(n)[:, None], torch.arange(n)[None, :]
        expected = (key > query) | ((query - key >= window) if window else torch.zeros(n, n, dtype=torch.bool))
        assert torch.equal(hidden, expected)
        assert (pattern[:, hidden] == 0).all() and (pattern[:, ~hidden] > 0).all()
        # the same numbers a block of rows at a time, as the views of long texts read them
        for rows in (slice(0, 3), slice(3, n)):
            assert torch.allclose(trace.pattern_rows(layer, rows), pattern[:, rows], atol=1e-6)
            assert torch.allclose(trace.scores_rows(layer, rows), scores[:, rows], atol=1e-6)
        if cfg.attn_softcap:
            assert scores.abs().max() < cfg.attn_softcap
            raw = trace["q", layer] @ trace["k", layer].transpose(-1, -2) * cfg.attn_scale
            assert raw.abs().max() > cfg.attn_softcap  # the cap bites in this case
            assert torch.allclose(scores, cfg.attn_softcap * torch.tanh(raw / cfg.attn_softcap), atol=1e-6)
    if cfg.final_softcap:
        logits = trace.logits
        assert logits.abs().max() < cfg.final_softcap
        raw = trace.resid_final @ model.weights.W_E.T  # before the cap
        assert raw.abs().max() > cfg.final_softcap  # the cap bites (Gemma ties W_U to W_E)
        assert torch.allclose(logits, cfg.final_softcap * torch.tanh(raw / cfg.final_softcap), atol=1e-5)


def test_the_fused_path_equals_the_explicit_one_with_windows_and_norms(built):
    """The fused kernel with a window mask against the explicit reference (Mistral: every layer windowed; OLMo 2:
    q/k norms over all heads and output norms)."""
    for case in ("mistral", "olmo2", "gpt_neox", "gptj"):
        _, model = built(case)
        fused, explicit = model.run(TEXT), model.run(TEXT, attention="explicit")
        for layer in range(model.config.n_layers):
            for name in ("z", "attn_out", "resid_post"):
                assert relative(fused[name, layer], explicit[name, layer]) < 1e-5, (case, name, layer)


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here; runs where there is one")


@CUDA
@pytest.mark.parametrize("attention", ["fused", "explicit"])
@pytest.mark.parametrize("case", list(CASES))
def test_family_on_cuda_matches_transformers(case, attention, tmp_path):
    hf = build(case, tmp_path)
    model = engine.load(str(tmp_path), device="cuda")
    trace = model.run(TEXT, attention=attention)
    with torch.no_grad():
        out = hf(torch.tensor([trace.token_ids]), output_attentions=True, output_hidden_states=True)
    ours = [trace["resid_pre", layer] for layer in range(model.config.n_layers)] + [trace.resid_final]
    for mine, theirs in zip(ours, out.hidden_states, strict=True):
        assert relative(mine.cpu(), theirs[0]) < 1e-5, case
    for layer, theirs in enumerate(out.attentions):
        assert (trace["pattern", layer].cpu() - theirs[0]).abs().max() < 1e-5, (case, layer)
    assert relative(trace.logits.cpu(), out.logits[0]) < 1e-5


@pytest.mark.parametrize("case", ["gemma3_text", "gpt_neo", "gptj"])
def test_patched_variants_in_one_batch_equal_patched_runs(case, built):
    """Batched patching sweeps (engine.batch) resume mid-model with each layer's own window and rotary base."""
    from engine.batch import run_variants

    _, model = built(case)
    base = model.run(TEXT)
    n, last = base.n_tokens, model.config.n_layers - 1
    other = model.run(TEXT.upper())
    variants = [(1, {0: {n - 2: other["z", 1, 0][n - 2]}}), (last, {1: {n - 1: other["z", last, 1][n - 1]}}),
                (0, {})]
    got = run_variants(base, variants)  # [3, n, d_model]
    for i, (layer, patch) in enumerate(variants):
        want = model.run(TEXT, patch={(layer, h): at for h, at in patch.items()}).resid_last
        assert relative(got[i], want) < 1e-5, (case, i)
    tail = run_variants(base, variants, positions=slice(n - 2, n))
    assert relative(tail, got[:, n - 2:]) < 1e-5
    again = model.run(TEXT, patch={(last, 1): variants[1][1][1]}, reuse=base)  # layers before `last` reused
    assert relative(again.resid_last, got[1]) < 1e-5


def test_a_window_without_the_causal_mask_reaches_as_far_both_ways(built):
    _, model = built("mistral")
    window = model.config.window(0)
    for attention in ("fused", "explicit"):
        trace = model.run(TEXT, causal=False, attention=attention)
        n = trace.n_tokens
        distance = (torch.arange(n)[:, None] - torch.arange(n)[None, :]).abs()
        assert torch.equal(trace.masked(layer=0), distance >= window)
        pattern = trace["pattern", 0]
        assert (pattern[:, distance >= window] == 0).all() and (pattern[:, distance < window] > 0).all()
        explicit_z = model.run(TEXT, causal=False, attention="explicit")["z", 2]
        assert relative(trace["z", 2], explicit_z) < 1e-5
