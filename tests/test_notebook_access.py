"""Reading every layer at once: trace.patterns() / trace.scores(), and runs with keep=("pattern",) that hand the
forward pass's patterns to their first reader. Both give exactly what trace["pattern", layer] gives, and
nothing they hand out can write into a trace."""

from __future__ import annotations

import pytest
import torch

from engine import InputError, RunCancelled

TEXT = "The gardener trapped the burrowing mole under the lawn, and the mole dug again."


@pytest.mark.parametrize("fixture", ["smollm", "minilm"])
def test_bulk_patterns_and_scores_are_exactly_the_per_layer_ones(fixture, request):
    model = request.getfixturevalue(fixture)
    trace = model.run(TEXT)
    n_layers, n = model.config.n_layers, trace.n_tokens
    patterns, scores = trace.patterns(), trace.scores()
    assert len(patterns) == len(scores) == n_layers
    for layer in range(n_layers):
        assert patterns[layer].shape == scores[layer].shape == (model.config.n_heads, n, n)
        assert torch.equal(patterns[layer], trace["pattern", layer])
        assert torch.equal(scores[layer], trace["scores", layer])
    some = trace.patterns([n_layers - 1, 0])
    assert torch.equal(some[0], patterns[-1]) and torch.equal(some[1], patterns[0])
    with pytest.raises(IndexError):
        trace.patterns([n_layers])
    with pytest.raises(IndexError):
        trace.scores([-1])


def test_bulk_results_belong_to_the_caller(smollm):
    """Each call computes new tensors: writing into them changes nothing the next reader sees."""
    trace = smollm.run(TEXT)
    before = [p.clone() for p in trace.patterns()]
    for handed in (*trace.patterns(), *trace.scores()):
        handed.fill_(7)
    assert all(torch.equal(p, b) for p, b in zip(trace.patterns(), before, strict=True))
    assert torch.isfinite(trace["scores", 0]).all() and not (trace["scores", 0] == 7).all()


@pytest.mark.parametrize("fixture", ["smollm", "minilm"])
def test_kept_patterns_are_exactly_the_computed_ones(fixture, request):
    """keep=("pattern",) runs attention explicitly; each kept pattern equals, bit for bit, the pattern a trace of
    the same explicit run computes on access, and the rest of the trace equals that run's too."""
    model = request.getfixturevalue(fixture)
    kept = model.run(TEXT, keep=("pattern",))
    plain = model.run(TEXT, attention="explicit")
    assert kept.attention == "explicit"
    if kept.logits is not None:
        assert torch.equal(kept.logits, plain.logits)
    for layer in range(model.config.n_layers):
        assert torch.equal(kept["z", layer], plain["z", layer])
        assert torch.equal(kept["pattern", layer, 1], plain["pattern", layer][1])  # one head: computed, not taken
        assert torch.equal(kept["pattern", layer], plain["pattern", layer])  # taken from the pass
        assert torch.equal(kept["pattern", layer], plain["pattern", layer])  # computed again
    assert not kept.kept_patterns_


def test_a_kept_pattern_is_given_away_not_shared(smollm):
    """The first reader gets the pattern itself (no copy) and the trace lets go of it: writing into it changes
    nothing later readers see, and the trace's memory drops back to that of a (lean) run without keep."""
    kept = smollm.run(TEXT, keep=("pattern",))
    plain = smollm.run(TEXT, attention="explicit", lean=True)
    n_layers = smollm.config.n_layers
    pattern_bytes = sum(p.untyped_storage().nbytes() for p in kept.kept_patterns_.values())
    assert len(kept.kept_patterns_) == n_layers
    assert kept.nbytes() == plain.nbytes() + pattern_bytes
    held = dict(kept.kept_patterns_)
    first = kept.patterns()
    assert all(p is held[layer] for layer, p in enumerate(first))  # handed over, not copied
    assert kept.nbytes() == plain.nbytes()
    stored = {key for key, _ in kept.storages()}
    assert not any(p.untyped_storage().data_ptr() in stored for p in first)
    with torch.inference_mode():  # tensors made inside a run are inference tensors
        for p in first:
            p.fill_(7)
    assert all(torch.equal(kept["pattern", layer], plain["pattern", layer]) for layer in range(n_layers))


def test_keep_is_checked_and_leaves_no_pattern_in_stored_layers(smollm):
    with pytest.raises(InputError, match="keep"):
        smollm.run(TEXT, keep="pattern")
    with pytest.raises(InputError, match="keep"):
        smollm.run(TEXT, keep=("scores",))
    calls = iter(range(100))
    with pytest.raises(RunCancelled) as stopped:
        smollm.run(TEXT, keep=("pattern",), cancel=lambda: next(calls) >= 5)
    assert all("pattern" not in stored for stored in stopped.value.prefix.layers)
    trace = smollm.run(TEXT, keep=("pattern",))
    assert all("pattern" not in stored for stored in trace.layers)


def test_keep_with_a_reused_prefix_keeps_the_computed_layers_only(smollm):
    """Layers taken from a reused (lean, explicit) run have no kept pattern; every pattern still equals a fresh
    explicit run's."""
    base = smollm.run(TEXT, attention="explicit", lean=True)
    switched = smollm.head_mask_without([(20, 3)])
    kept = smollm.run(TEXT, keep=("pattern",), reuse=base, head_mask=switched)
    assert sorted(kept.kept_patterns_) == list(range(20, smollm.config.n_layers))
    fresh = smollm.run(TEXT, attention="explicit", head_mask=switched)
    assert all(torch.equal(p, f) for p, f in zip(kept.patterns(), fresh.patterns(), strict=True))
