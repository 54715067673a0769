"""Generation with a key/value cache: the same tokens as Hugging Face's greedy generate, the same as a plain
loop of full runs when heads are switched off, a trace equal to a full run, reproducible sampling, clear errors."""

from __future__ import annotations

import pytest
import torch
from test_parity import tiny

import engine

PROMPTS = ["The capital of France is", "Once upon a time, a small mole", "def fibonacci(n):\n   "]


def hf_greedy(hf, ids: list[int], n: int) -> list[int]:
    with torch.no_grad():
        out = hf.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                          max_new_tokens=n, do_sample=False, pad_token_id=hf.config.eos_token_id)
    return out[0].tolist()


@pytest.mark.slow
@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_equals_hugging_face_on_smollm2(smollm, smollm_hf, prompt):
    gen = smollm.generate(prompt, max_new_tokens=20)
    ids = smollm.tokenize(prompt)[0]
    assert list(gen.token_ids) == hf_greedy(smollm_hf, ids, 20)
    assert gen.n_prompt == len(ids) and len(gen.steps) == len(gen.token_ids) - len(ids)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_greedy_equals_hugging_face_on_random_models(kind, tmp_path):
    hf, model = tiny(kind, tmp_path)
    for prompt in PROMPTS:
        ids = model.tokenize(prompt)[0]
        gen = model.generate(prompt, max_new_tokens=20)
        assert list(gen.token_ids) == hf_greedy(hf, ids, 20), prompt


def test_with_heads_off_it_equals_a_loop_of_full_runs(smollm):
    mask = smollm.head_mask_without([(0, 1), (3, 4), (12, 0), (12, 1), (12, 2)])
    gen = smollm.generate("The mole dug a tunnel under", max_new_tokens=8, head_mask=mask)
    ids = smollm.tokenize("The mole dug a tunnel under")[0]
    for _ in range(8):
        ids.append(int(smollm.run_ids(ids, head_mask=mask).logits_at(-1).argmax()))
    assert list(gen.token_ids) == ids
    assert list(smollm.generate("The mole dug a tunnel under", max_new_tokens=8).token_ids) != ids


def test_the_trace_equals_a_full_run_of_the_final_tokens(smollm):
    mask = smollm.head_mask_without([(2, 2), (20, 5)])
    gen = smollm.generate("Paris is the capital of", max_new_tokens=10, head_mask=mask)
    full = smollm.run_ids(gen.token_ids, head_mask=mask)
    trace = gen.trace
    assert trace.token_ids == full.token_ids and trace.tokens == gen.tokens and torch.equal(trace.head_mask, mask)
    for layer in range(smollm.config.n_layers):
        assert (trace["pattern", layer] - full["pattern", layer]).abs().max() < 1e-5, layer
        for name in ("resid_pre", "z", "attn_out", "mlp_out", "resid_post"):
            ours, theirs = trace[name, layer], full[name, layer]
            assert (ours - theirs).abs().max() <= 1e-5 * max(theirs.abs().max(), 1.0), (name, layer)
    assert (trace.logits - full.logits).abs().max() < 1e-3
    # each step's probabilities are the full run's at the position before the new token
    for step in gen.steps:
        probs = torch.softmax(full.logits_at(step.position - 1), -1)
        assert step.prob == pytest.approx(float(probs[step.token_id]), abs=1e-5)
        assert [i for i, _, _ in step.top] == probs.topk(10).indices.tolist()
        assert step.token == smollm.readable([step.token_id])[0]


def test_sampling_is_reproducible_with_a_seed(smollm):
    kwargs = dict(max_new_tokens=12, temperature=1.2, top_k=50)
    a = smollm.generate("My favourite animal is the", seed=7, **kwargs)
    b = smollm.generate("My favourite animal is the", seed=7, **kwargs)
    c = smollm.generate("My favourite animal is the", seed=8, **kwargs)
    assert a.token_ids == b.token_ids and a.token_ids != c.token_ids
    for step in a.steps:  # top-k: every sampled token is among the 50 most likely
        probs = torch.softmax(a.trace.logits_at(step.position - 1), -1)
        assert step.token_id in probs.topk(50).indices.tolist()


def test_it_stops_after_the_end_of_text_token(smollm):
    eos = smollm.config.eos_token_ids
    assert eos == (2,)
    gen = smollm.generate("<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\n", max_new_tokens=60)
    assert gen.stopped_at_eos and gen.token_ids[-1] in eos and len(gen.steps) < 60


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(max_new_tokens=0), "max_new_tokens must be a whole number from 1 to"),
    (dict(max_new_tokens=9000), "max_new_tokens must be a whole number from 1 to 8187"),
    (dict(max_new_tokens=2.5), "max_new_tokens must be a whole number"),
    (dict(temperature=-1), "temperature must be a finite number ≥ 0"),
    (dict(temperature=float("nan")), "temperature must be a finite number"),
    (dict(temperature="hot"), "temperature must be a finite number"),
    (dict(top_k=0), "top_k must be None or a whole number from 1 to 49152"),
    (dict(top_k=50_000), "top_k must be None or a whole number from 1 to 49152"),
    (dict(seed=-3), "seed must be None or a whole number"),
    (dict(seed=2**64), "seed must be None or a whole number from 0 to 18446744073709551615"),
])
def test_bad_arguments_get_their_message(smollm, kwargs, message):
    with pytest.raises(engine.InputError, match=message):
        smollm.generate("The capital of France is", **{"max_new_tokens": 4, **kwargs})


def test_an_encoder_cannot_generate(minilm):
    with pytest.raises(engine.InputError, match="minilm-l6 is an encoder"):
        minilm.generate("The capital of France is", max_new_tokens=4)


def test_a_tiny_temperature_samples_the_most_likely_token(smollm):
    greedy = smollm.generate("The capital of France is", max_new_tokens=4)
    for temperature in (1e-300, 1e-310):  # logits / T would overflow to inf without the shift by the largest
        assert smollm.generate("The capital of France is", max_new_tokens=4, temperature=temperature,
                               seed=0).token_ids == greedy.token_ids
