"""Two contexts compared: head distances, similarity across layers, and patching sweeps (batched and one run
at a time), against direct computations from patched runs of Model.run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import engine
from engine.analysis import compare, senses
from engine.batch import run_variants

ANIMAL = "The gardener trapped the burrowing mole"
CHEMISTRY = "In chemistry, the amount of a substance is measured in units called the mole"


@pytest.fixture(scope="module", params=["smollm", "minilm"])
def model(request):
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def pair(model):
    """(A, A's target, B, B's target): "mole" in the animal and in the chemistry sentence."""
    targets = [senses.find_word(model, text, "mole")[0][-1] for text in (ANIMAL, CHEMISTRY)]
    return model.run(ANIMAL), targets[0], model.run(CHEMISTRY), targets[1]


def close(x: torch.Tensor, y: torch.Tensor) -> bool:
    """Equal up to float32 rounding: SmolLM2's residual stream reaches ~2,800 (the first token)."""
    return float((x - y).abs().max()) <= 1e-5 * max(float(y.abs().max()), 1.0)


def cos(x: torch.Tensor, y: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(x.double(), y.double(), dim=-1))


def test_head_distances(model, pair):
    a, ta, b, tb = pair
    got = compare.head_distances(a, ta, b, tb)
    for layer in (0, model.config.n_layers - 1):
        for head in range(model.config.n_heads):
            want = 1 - cos(a["head_out", layer][head, ta], b["head_out", layer][head, tb])
            assert got[layer, head] == pytest.approx(want, abs=1e-6)  # float32 head_out
    b_off = model.run(CHEMISTRY, head_mask=model.head_mask_without([(1, 2)]))
    off = compare.head_distances(a, ta, b_off, tb)
    assert np.isnan(off[1, 2]) and np.isfinite(np.delete(off.ravel(), 1 * model.config.n_heads + 2)).all()


def test_layer_similarity_is_the_word_senses_similarity(model, pair):
    a, ta, b, tb = pair
    got = compare.layer_similarity(a, ta, b, tb)
    vectors = np.stack([senses.word_vectors(a, [ta]), senses.word_vectors(b, [tb])])
    np.testing.assert_allclose(got, senses.similarity_by_layer(vectors)[:, 0, 1], atol=1e-6)
    assert got.shape == (model.config.n_layers + 1,)


def test_run_variants_equal_patched_runs(model, pair):
    a, ta, b, tb = pair
    n_layers, n_heads = model.config.n_layers, model.config.n_heads
    variants = [(0, {1: {tb: a["z", 0, 1][ta]}}),
                (n_layers - 1, {h: {tb: a["z", n_layers - 1, h][ta]} for h in range(n_heads)}),
                (2, {0: {tb: a["z", 2, 0][ta]}, 3: {tb - 1: a["z", 2, 3][ta - 1]}}),
                (2, {})]
    got = run_variants(b, variants)  # [4, n, d_model], every position
    for i, (layer, patch) in enumerate(variants):
        want = model.run(CHEMISTRY, patch={(layer, h): at for h, at in patch.items()}).resid_last
        assert close(got[i], want)
    if model.config.causal:  # only the positions asked for; earlier keys and values come from b
        tail = run_variants(b, variants, positions=slice(tb - 1, tb + 1))
        assert close(tail, got[:, tb - 1: tb + 1])
        with pytest.raises(engine.EngineError, match="before position"):
            run_variants(b, variants, positions=slice(tb, tb + 1))  # variant 2 patches tb - 1
    else:
        with pytest.raises(engine.EngineError, match="causal"):
            run_variants(b, variants, positions=slice(tb, tb + 1))
    with pytest.raises(engine.EngineError, match="layer"):
        run_variants(b, [(n_layers, {})])
    with pytest.raises(engine.EngineError, match="shape"):
        run_variants(b, [(1, {0: {tb: torch.zeros(3)}})])


def test_run_variants_keep_the_base_runs_settings(smollm):
    mask = smollm.head_mask_without([(3, 1), (20, 4)])
    own = {(5, 2): {4: torch.ones(64)}, (1, 0): {2: torch.zeros(64)}}
    for attention in ("fused", "explicit"):
        base = smollm.run(CHEMISTRY, head_mask=mask, patch=own, attention=attention)
        extra = {6: {9: torch.full((64,), 0.5)}}
        got = run_variants(base, [(5, extra), (4, {})], positions=slice(9, 12))
        want = smollm.run(CHEMISTRY, head_mask=mask, patch={**own, (5, 6): {9: torch.full((64,), 0.5)}},
                          attention=attention).resid_last[9:12]
        assert close(got[0], want)
        assert close(got[1], base.resid_last[9:12])


@pytest.mark.parametrize("kind", ["gpt2", "llama", "bert"])
def test_run_variants_on_each_family(kind, tmp_path):
    from test_parity import TEXT, tiny

    _, model = tiny(kind, tmp_path)
    base = model.run(TEXT)
    d_head, n = model.config.d_head, base.n_tokens
    z = torch.linspace(-1, 1, d_head)
    variants = [(1, {0: {n - 2: z}}), (2, {1: {n - 2: -z}})]
    got = run_variants(base, variants)
    for i, (layer, patch) in enumerate(variants):
        want = model.run(TEXT, patch={(layer, h): at for h, at in patch.items()}).resid_last
        assert close(got[i], want)


def test_sweeps_equal_one_patched_run_at_a_time(model, pair):
    a, ta, b, tb = pair
    run = compare.default_run(model, b)
    batched = compare.sweep_heads(a, ta, b, tb, 1)
    one_by_one = compare.sweep_heads(a, ta, b, tb, 1, run=run)
    np.testing.assert_allclose(batched.gap_closed, one_by_one.gap_closed, atol=1e-5)
    layers = compare.sweep_layers(a, ta, b, tb)
    layers_one = compare.sweep_layers(a, ta, b, tb, run=run)
    np.testing.assert_allclose(layers.gap_closed, layers_one.gap_closed, atol=1e-5)
    if model.config.causal:
        np.testing.assert_allclose(batched.logprob_change, one_by_one.logprob_change, atol=1e-4)
        np.testing.assert_allclose(layers.logprob_change, layers_one.logprob_change, atol=1e-4)
    else:
        assert batched.logprob_change is None and batched.token_id is None


def test_sweep_effects_from_patched_runs(model, pair):
    a, ta, b, tb = pair
    layer = model.config.n_layers - 2
    got = compare.sweep_heads(a, ta, b, tb, layer)
    assert got.gap_closed.shape == (model.config.n_heads,)
    base_cos = cos(b.resid_last[tb], a.resid_last[ta])
    assert got.base_cos == pytest.approx(base_cos, abs=1e-9)
    for head in (0, model.config.n_heads - 1):
        patched = model.run(CHEMISTRY, patch={(layer, head): {tb: a["z", layer][head, ta]}})
        gap = (cos(patched.resid_last[tb], a.resid_last[ta]) - base_cos) / (1 - base_cos)
        assert got.gap_closed[head] == pytest.approx(gap, abs=1e-5)
        assert got.cells[head] == ((layer, head),)
        if model.config.causal:
            token = int(a.logits_at(ta).argmax())  # the default: A's top prediction after its target
            assert got.token_id == token
            change = (torch.log_softmax(patched.logits_at(tb).double(), -1)[token]
                      - torch.log_softmax(b.logits_at(tb).double(), -1)[token])
            assert got.logprob_change[head] == pytest.approx(float(change), abs=1e-4)


def test_sweep_over_every_head(smollm):
    a, b = smollm.run(ANIMAL), smollm.run(CHEMISTRY)
    seen = []
    got = compare.sweep_all_heads(a, -1, b, -1, token_id=1234, progress=lambda done, total: seen.append((done, total)))
    assert got.gap_closed.shape == got.logprob_change.shape == (30, 9) and got.token_id == 1234
    assert seen[-1][0] == seen[-1][1] == 9 * sum(30 - layer for layer in range(30))
    layer_12 = compare.sweep_heads(a, -1, b, -1, 12, token_id=1234)
    np.testing.assert_allclose(got.gap_closed[12], layer_12.gap_closed, atol=1e-6)
    with pytest.raises(ValueError):
        got.gap_closed[0, 0] = 1.0


def test_a_sweep_of_a_run_into_itself_changes_nothing(smollm):
    b = smollm.run(CHEMISTRY)
    got = compare.sweep_layers(b, -1, b, -1)
    assert got.base_cos == pytest.approx(1.0) and np.isnan(got.gap_closed).all()
    assert np.abs(got.logprob_change).max() < 1e-4


def test_compare_refuses_bad_input(smollm, minilm):
    a, b = smollm.run(ANIMAL), smollm.run(CHEMISTRY)
    with pytest.raises(engine.EngineError, match="target B"):
        compare.head_distances(a, 0, b, 99)
    with pytest.raises(engine.EngineError, match="different models"):
        compare.layer_similarity(a, 0, minilm.run(CHEMISTRY), 0)
    with pytest.raises(engine.EngineError, match="layer 30"):
        compare.sweep_heads(a, 0, b, 0, 30)
    with pytest.raises(engine.EngineError, match="vocabulary"):
        compare.sweep_heads(a, 0, b, 0, 3, token_id=10**6)
    with pytest.raises(engine.EngineError, match="one layer"):
        compare.sweep(a, 0, b, 0, [[(1, 0), (2, 0)]], (1,))
