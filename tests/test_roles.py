"""Head roles and the in-context learning check, against independent computations from the patterns."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import engine
from engine.analysis import icl, roles
from engine.analysis.senses import top_heads


def expected_scores(trace: engine.Trace) -> dict[str, np.ndarray]:
    """The role definitions written out position by position, from trace["pattern", layer]."""
    ids, n = trace.token_ids, trace.n_tokens
    targets = {
        "previous_token": lambda i: [i - 1] if i >= 1 else [],
        "first_token": lambda i: [0] if i >= 1 else [],
        "self": lambda i: [i],
        "duplicate_token": lambda i: [j for j in range(i) if ids[j] == ids[i]],
        "induction": lambda i: [j + 1 for j in range(n) if j + 1 < i and ids[j] == ids[i]],
    }
    out = {}
    for role, of in targets.items():
        rows = [(i, of(i)) for i in range(n) if of(i)]
        scores = np.full((trace.config.n_layers, trace.config.n_heads), math.nan)
        for layer in range(trace.config.n_layers):
            pattern = trace["pattern", layer].double()  # [n_heads, n, n]
            if rows:
                scores[layer] = np.mean([pattern[:, i, keys].sum(-1).numpy() for i, keys in rows], axis=0)
        out[role] = scores
    return out


@pytest.fixture(scope="module", params=["smollm", "minilm"])
def model(request):
    return request.getfixturevalue(request.param)


def ordinary(model: engine.Model, count: int) -> list[int]:
    return list(roles.standard_probe(model, seed=7, length=count).token_ids[len(roles.special_ends(model)[0]):][:count])


def test_scores_equal_the_definitions_with_duplicates_inside_a_segment(model):
    a, b, c, d, e = ordinary(model, 5)
    lead, trail = roles.special_ends(model)
    ids = lead + [a, b, a, c, b, a, d, e, a, b, a, c, d] + trail  # repeats inside and across segments
    got = roles.head_roles(model, token_ids=ids)
    want = expected_scores(got.trace)
    for role in roles.ROLES:
        assert got.defined[role]
        assert got[role].shape == (model.config.n_layers, model.config.n_heads)
        np.testing.assert_allclose(got[role], want[role], atol=1e-6)
    assert got.n_positions["duplicate_token"] == 8  # later copies: a 4, b 2, c 1, d 1
    assert got.probe is None and got.token_ids == tuple(ids)


def test_a_sequence_without_repeats_has_no_duplicate_or_induction_positions(model):
    lead, trail = roles.special_ends(model)
    ids = lead + ordinary(model, 12) + trail
    got = roles.head_roles(model, token_ids=ids)
    want = expected_scores(got.trace)
    for role in ("duplicate_token", "induction"):
        assert not got.defined[role] and got.n_positions[role] == 0
        assert np.isnan(got[role]).all()
    for role in ("previous_token", "first_token", "self"):
        assert got.defined[role]
        np.testing.assert_allclose(got[role], want[role], atol=1e-6)


def test_scores_follow_the_mask_and_head_switches(smollm):
    ids = ordinary(smollm, 6) * 2
    mask = smollm.head_mask_without([(2, 1), (5, 0)])
    got = roles.head_roles(smollm, token_ids=ids, causal=False, head_mask=mask)
    assert not got.trace.causal and torch.equal(got.trace.head_mask, mask)
    want = expected_scores(got.trace)
    for role in roles.ROLES:
        np.testing.assert_allclose(got[role], want[role], atol=1e-6)


def test_scores_are_read_only(smollm):
    got = roles.head_roles(smollm, token_ids=ordinary(smollm, 4) * 2)
    with pytest.raises(ValueError):
        got["induction"][0, 0] = 1.0
    with pytest.raises(TypeError):
        got.scores["induction"] = np.zeros(1)


def test_standard_probe(smollm, minilm):
    probe = roles.standard_probe(smollm, seed=3, length=20)
    assert len(probe.token_ids) == 40 and probe.first == slice(0, 20) and probe.second == slice(20, 40)
    first = probe.token_ids[probe.first]
    assert probe.token_ids[probe.second] == first and len(set(first)) == 20
    assert not set(first) & smollm.special_ids
    assert roles.standard_probe(smollm, seed=3, length=20) == probe
    assert roles.standard_probe(smollm, seed=4, length=20) != probe

    probe = roles.standard_probe(minilm, seed=0, length=10)
    assert minilm.readable(probe.token_ids[:1]) == ["[CLS]"] and minilm.readable(probe.token_ids[-1:]) == ["[SEP]"]
    assert probe.first == slice(1, 11) and probe.second == slice(11, 21) and len(probe.token_ids) == 22
    assert not any(t.startswith("[") for t in minilm.readable(probe.token_ids[1:-1]))  # no [unused7]
    with pytest.raises(engine.EngineError, match="context"):
        roles.standard_probe(minilm, length=400)


def test_one_forward_pass(smollm, monkeypatch):
    import engine.model

    calls = []
    real = engine.model.forward
    monkeypatch.setattr(engine.model, "forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    got = roles.head_roles(smollm)
    assert len(calls) == 1 and got.probe is not None and got.token_ids == got.probe.token_ids


@pytest.mark.parametrize("kind", ["gpt2", "llama", "bert"])
def test_random_weights_have_no_induction_head(kind, tmp_path):
    from test_parity import tiny

    _, model = tiny(kind, tmp_path)
    got = roles.head_roles(model, length=30)  # the tiny models hold 64 positions
    assert got.defined["induction"]
    assert np.nanmax(got["induction"]) < 0.5


def test_smollm_induction_heads_carry_in_context_learning(smollm):
    got = roles.head_roles(smollm)
    top = top_heads(got["induction"], 3)
    assert all(score > 0.75 for _, _, score in top)
    mask = smollm.head_mask_without((layer, head) for layer, head, _ in top)
    check = icl.icl_losses(smollm, got.probe, mask, unmodified=got.trace)
    assert check.unmodified.second < check.unmodified.first - 8  # the repeated half is predicted from context
    assert check.current.second > check.unmodified.second + 2  # ... and much less without the induction heads
    assert abs(check.current.first - check.unmodified.first) < 0.5  # the first half barely notices


def test_token_losses_are_cross_entropies(smollm):
    probe = roles.standard_probe(smollm, length=8)
    trace = smollm.run_ids(probe.token_ids)
    losses = icl.half_losses(trace, probe)
    log_probs = torch.log_softmax(trace.logits.double(), dim=-1)
    want = [-float(log_probs[t - 1, probe.token_ids[t]]) for t in range(1, 16)]
    np.testing.assert_allclose(losses.per_token[1:], want, rtol=1e-5)  # logits of some rows vs all: float32 rounding
    assert math.isnan(losses.per_token[0])
    assert losses.first == pytest.approx(np.mean(want[:7])) and losses.second == pytest.approx(np.mean(want[7:]))
    unchanged = icl.icl_losses(smollm, probe)
    np.testing.assert_allclose(unchanged.current.per_token, unchanged.unmodified.per_token)


def test_minilm_roles_and_no_loss(minilm):
    got = roles.head_roles(minilm)
    assert all(got.defined.values()) and not got.trace.causal
    with pytest.raises(engine.EngineError):
        icl.icl_losses(minilm, got.probe)


def test_strongest_roles_picks_the_best_role_that_reaches_the_threshold():
    scores = {role: np.full((2, 2), 0.1) for role in roles.ROLES}
    scores["induction"] = np.array([[0.9, 0.2], [math.nan, 0.6]])
    scores["self"] = np.array([[0.95, 0.1], [0.7, 0.6]])
    role, score = roles.strongest_roles(scores, 0.5)
    induction, self_ = roles.ROLES.index("induction"), roles.ROLES.index("self")
    np.testing.assert_array_equal(role, [[self_, -1], [self_, induction]])  # a tie goes to the earlier role
    np.testing.assert_allclose(score, [[0.95, math.nan], [0.7, 0.6]])
    role, _ = roles.strongest_roles(scores, 0.96)
    assert (role == -1).all()


def test_head_roles_is_a_mapping_of_the_five_roles(smollm):
    from collections.abc import Mapping

    got = engine.head_roles(smollm)
    assert isinstance(got, Mapping) and "induction" in got and "nonsense" not in got and 0 not in got
    assert list(got) == list(got.keys()) == list(roles.ROLES) and len(got) == 5
    as_dict = dict(got)
    assert set(as_dict) == {"previous_token", "duplicate_token", "induction", "first_token", "self"}
    for role, scores in got.items():
        assert as_dict[role] is scores is got.scores[role] and scores.shape == (30, 9)
    assert got.get("induction") is got["induction"] and got.get("nonsense") is None
    assert got.probe is not None and got.trace.token_ids == got.probe.token_ids  # the other fields stay attributes
    ids = {key for key, _ in got.storages()}
    assert {key for key, _ in got.trace.storages()} <= ids  # a run cache counts its probe run
