"""Activation patching in Model.run (patch=) and the reuse of unchanged layers (reuse=)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import engine

ANIMAL = "The gardener trapped the burrowing mole"
CHEMISTRY = "In chemistry, the amount of a substance is measured in units called the mole"
STORED = ("resid_pre", "q", "k", "v", "z", "attn_out", "mlp_out", "resid_post")


@pytest.fixture(scope="module", params=["smollm", "minilm"])
def model(request):
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def base(model):
    return model.run(ANIMAL)


def max_difference(a: engine.Trace, b: engine.Trace, layers=None, positions=slice(None)) -> float:
    """The largest difference between two runs over the named tensors, some layers and token positions."""
    layers = range(a.config.n_layers) if layers is None else layers
    worst = 0.0
    for layer in layers:
        for name in STORED:
            x, y = a[name, layer], b[name, layer]
            x, y = (x[:, positions], y[:, positions]) if x.dim() == 3 and name in ("q", "k", "v", "z") else (
                x[positions], y[positions])
            worst = max(worst, float((x - y).abs().max()))
    if layers and max(layers) == a.config.n_layers - 1:
        worst = max(worst, float((a.resid_final[positions] - b.resid_final[positions]).abs().max()))
        if a.logits is not None:
            worst = max(worst, float((a.logits_at(positions) - b.logits_at(positions)).abs().max()))
    return worst


def own_z(trace: engine.Trace, heads) -> dict:
    return {(layer, head): {p: trace["z", layer][head, p] for p in range(trace.n_tokens)} for layer, head in heads}


def test_patching_a_head_with_its_own_z_reproduces_the_run(model, base):
    heads = [(0, 1), (2, 3), (model.config.n_layers - 1, 0)]
    assert max_difference(model.run(ANIMAL, patch=own_z(base, heads)), base) <= 1e-6
    assert max_difference(model.run(ANIMAL, patch=own_z(base, heads), reuse=base), base) <= 1e-6
    one = {(3, 2): {4: base["z", 3][2, 4].numpy()}}  # one position, given as a numpy array
    assert max_difference(model.run(ANIMAL, patch=one), base) <= 1e-6


def test_patching_zeros_everywhere_equals_switching_the_head_off(model):
    heads = [(1, 0), (4, 2)]
    off = model.run(ANIMAL, head_mask=model.head_mask_without(heads))
    n, d_head = off.n_tokens, model.config.d_head
    zeros = {key: {p: torch.zeros(d_head) for p in range(n)} for key in heads}
    patched = model.run(ANIMAL, patch=zeros)
    assert max_difference(patched, off) <= 1e-6
    for layer, head in heads:
        assert not patched["head_out", layer][head].any()


def test_a_patch_changes_nothing_before_its_layer_or_position(model, base):
    layer, head, p = 2, 1, 3
    other = model.run(CHEMISTRY)
    patch = {(layer, head): {p: other["z", layer][head, -1]}}
    patched = model.run(ANIMAL, patch=patch)
    assert max_difference(patched, base, layers=range(layer)) == 0.0  # layers before L: exactly the same
    assert float((patched["z", layer][head, p] - other["z", layer][head, -1]).abs().max()) == 0.0
    after = max_difference(patched, base, layers=range(layer, model.config.n_layers), positions=slice(p, p + 1))
    assert after > 1e-3  # the patch did something at p
    before = max_difference(patched, base, positions=slice(0, p))
    if model.config.causal:
        assert before <= 1e-6  # nothing at earlier positions, in any layer
    else:
        assert before > 1e-3  # bidirectional: later layers' earlier positions see the patched token


def test_a_patch_read_from_another_runs_trace(model, base):
    other = model.run(CHEMISTRY)
    layer = model.config.n_layers // 2
    patch = {(layer, h): {-1: other["z", layer][h, -1]} for h in range(model.config.n_heads)}
    patched = model.run(ANIMAL, patch=patch, reuse=base)
    assert torch.equal(patched["z", layer][:, -1], other["z", layer][:, -1])
    assert max_difference(patched, model.run(ANIMAL, patch=patch)) <= 1e-6
    assert max_difference(patched, base, layers=range(layer + 1, model.config.n_layers)) > 1e-3
    assert dict(patched.patch[layer][0]).keys() == {base.n_tokens - 1}  # stored with a non-negative position


@pytest.mark.parametrize("patch, message", [
    ({(30, 0): {0: np.zeros(64)}}, "layer 30"),
    ({(-1, 0): {0: np.zeros(64)}}, "layer -1"),
    ({(0, 9): {0: np.zeros(64)}}, "head 9"),
    ({(0, 1): {7: np.zeros(64)}}, "position 7"),
    ({(0, 1): {-8: np.zeros(64)}}, "position -8"),
    ({(0, 1): {"2": np.zeros(64)}}, "position '2'"),
    ({(0, 1): {1.0: np.zeros(64)}}, "position 1.0"),
    ({(0, 1): {2: np.zeros(63)}}, r"shape \(64,\)"),
    ({(0, 1): {2: np.zeros((1, 64))}}, r"shape \(64,\)"),
    ({(0, 1): {2: np.full(64, np.nan)}}, "NaN"),
    ({(0, 1): {2: np.full(64, np.inf)}}, "infinite"),
    ({(0, 1): {2: ["a"] * 64}}, "vector of 64 numbers"),
    ({(0, 1): [np.zeros(64)]}, "must map positions"),
    ({0: {2: np.zeros(64)}}, "key 0"),
    ([((0, 1), {2: np.zeros(64)})], "patch must map"),
])
def test_a_malformed_patch_is_named(smollm, patch, message):
    with pytest.raises(engine.EngineError, match=message):
        smollm.run(ANIMAL, patch=patch)  # 7 tokens, 30 layers × 9 heads, d_head 64


def test_reuse_gives_the_run_without_reuse(model, base):
    n_layers = model.config.n_layers
    mask = model.head_mask_without([(n_layers - 2, 1)])
    patch = {(1, 0): {2: base["z", 1][0, 5]}}
    cases = [  # (settings of the new run, how many layers the base can give)
        ({}, n_layers),
        ({"head_mask": mask}, n_layers - 2),
        ({"patch": patch}, 1),
        ({"head_mask": mask, "patch": patch}, 1),
        ({"causal": not model.config.causal}, 0),  # the other mask: nothing can be reused
        ({"attention": "explicit"}, 0),
    ]
    for settings, kept in cases:
        reused = model.run(ANIMAL, reuse=base, **settings)
        fresh = model.run(ANIMAL, **settings)
        assert max_difference(reused, fresh) <= 1e-6, settings
        shared = [reused.layers[layer]["q"] is base.layers[layer]["q"] for layer in range(n_layers)]
        assert shared == [layer < kept for layer in range(n_layers)], settings
    other_mask = model.run(ANIMAL, causal=not model.config.causal)
    assert max_difference(model.run(ANIMAL, reuse=other_mask), base) <= 1e-6
    other_text = model.run(CHEMISTRY)
    assert max_difference(model.run(ANIMAL, reuse=other_text), base) <= 1e-6


def test_a_trace_keeps_its_patch_read_only(smollm):
    z = torch.ones(64)
    trace = smollm.run(ANIMAL, patch={(0, 0): {1: z}})
    z += 1  # the caller's vector changes later: the trace's record does not
    assert torch.equal(trace.patch[0][0][1], torch.ones(64))
    with pytest.raises(TypeError):
        trace.patch[0][0][1] = z
