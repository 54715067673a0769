"""Value-weighted attention, attention sinks and rollout, against direct computations from v, W_O and patterns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import engine
from engine.analysis import rollout, sinks, value_weighted
from engine.analysis.head_stats import head_summary

TEXT = "The gardener trapped the burrowing mole under the old oak"


@pytest.fixture(scope="module", params=["smollm", "minilm"])
def model(request):
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def runs(model) -> dict[str, engine.Trace]:
    """The text with every head on, and with three heads switched off."""
    return {"trace": model.run(TEXT), "switched": model.run(TEXT, head_mask=model.head_mask_without([(1, 0), (1, 2),
                                                                                                        (3, 1)]))}


@pytest.fixture(scope="module")
def trace(runs):
    return runs["trace"]


@pytest.fixture(scope="module")
def switched(runs):
    return runs["switched"]


def direct_contributions(trace: engine.Trace, layer: int) -> torch.Tensor:
    """α^h_ij · v^h_j W_O[h] for every head, query and key: [n_heads, n, n, d_model], float64."""
    pattern = trace["pattern", layer].double()  # [n_heads, n, n]
    v = trace["v", layer].double()  # [n_heads, n, d_head]
    W_O = trace.weights.blocks[layer].attn.W_O.double()  # [n_heads, d_head, d_model]
    u = torch.stack([v[h] @ W_O[h] for h in range(trace.config.n_heads)])  # [n_heads, n, d_model]
    u = u * trace.head_mask[layer].double()[:, None, None]  # a switched-off head adds nothing
    return pattern[..., None] * u[:, None, :, :]


@pytest.mark.parametrize("which", ["trace", "switched"])
def test_value_weighted_norms_equal_a_direct_computation(which, runs):
    trace = runs[which]
    for layer in (0, 1, trace.config.n_layers - 1):
        parts = direct_contributions(trace, layer)  # [n_heads, n, n, d_model]
        want_layer = parts.sum(0).norm(dim=-1).numpy()  # [n, n]
        got_layer = value_weighted.layer_weighted(trace, layer)
        np.testing.assert_allclose(got_layer, want_layer, rtol=1e-6, atol=1e-6 * want_layer.max())
        for head in range(trace.config.n_heads):
            want = parts[head].norm(dim=-1).numpy()  # [n, n]
            np.testing.assert_allclose(value_weighted.head_weighted(trace, layer, head), want, rtol=1e-6, atol=1e-9)
        want = parts[4, 3].norm(dim=-1).numpy()  # head 4, query 3: [n]
        row = value_weighted.head_weighted(trace, layer, 4, rows=3, normalise=True)
        np.testing.assert_allclose(row[0], want / want.sum(), rtol=1e-5)  # float32 inputs
        block = value_weighted.layer_weighted(trace, layer, rows=slice(2, 5), normalise=True)
        np.testing.assert_allclose(block, want_layer[2:5] / want_layer[2:5].sum(-1, keepdims=True), rtol=1e-6)
        np.testing.assert_allclose(block.sum(-1), 1.0, atol=1e-12)


def test_value_weighted_is_zero_for_a_switched_off_head(switched):
    assert not value_weighted.head_weighted(switched, 1, 0).any()
    assert not value_weighted.head_weighted(switched, 1, 0, normalise=True).any()
    assert value_weighted.head_weighted(switched, 1, 1).any()


def test_first_token_shares(trace, switched):
    for t in (trace, switched):
        shares = sinks.first_token_shares(t)
        np.testing.assert_allclose(shares.raw, head_summary(t)["first"], atol=1e-6)
        cfg = t.config
        want = np.zeros((cfg.n_layers, cfg.n_heads))
        for layer in range(cfg.n_layers):
            size = direct_contributions(t, layer).norm(dim=-1)  # [n_heads, n, n]
            want[layer] = (size[:, :, 0] / size.sum(-1)).mean(-1).numpy()
        want[~t.head_mask.numpy()] = np.nan
        np.testing.assert_allclose(shares.weighted, want, rtol=1e-6, atol=1e-9)
        assert shares.weighted.shape == shares.raw.shape == (cfg.n_layers, cfg.n_heads)
        with pytest.raises(ValueError):
            shares.weighted[0, 0] = 0.5


def test_smollm_first_token_takes_more_weight_than_it_contributes(smollm):
    trace = smollm.run(TEXT)
    shares = sinks.first_token_shares(trace)
    assert np.mean(shares.weighted) < np.mean(shares.raw) - 0.1  # the sink: α without as much output
    norms = torch.stack([value_weighted.value_norms(trace, layer) for layer in range(30)])  # [30, n_heads, n]
    small = norms[:, :, 0] < 0.5 * norms[:, :, 1:].median(-1).values  # the first token's values are small
    assert small.float().mean() > 0.8


def test_pattern_without_first(trace):
    layer = 2
    pattern = trace["pattern", layer].numpy()  # [n_heads, n, n]
    got = sinks.pattern_without_first(trace, layer)
    assert got.shape == pattern.shape and not got[..., 0].any()
    start = 1 if trace.causal else 0  # a causal query 0 sees only the first key
    np.testing.assert_allclose(got[:, start:].sum(-1), 1.0, atol=1e-5)
    want = pattern[:, start:, 1:] / pattern[:, start:, 1:].sum(-1, keepdims=True)
    np.testing.assert_allclose(got[:, start:, 1:], want, rtol=1e-5, atol=1e-7)
    if trace.causal:
        assert not got[:, 0].any()
    one = sinks.pattern_without_first(trace, layer, head=3, rows=slice(2, 4))
    np.testing.assert_allclose(one, got[3, 2:4], rtol=1e-5, atol=1e-7)


def direct_rollout(trace: engine.Trace, weighted: bool) -> np.ndarray:
    n, out, rolled = trace.n_tokens, [], np.eye(trace.n_tokens)
    for layer in range(trace.config.n_layers):
        if weighted:
            A = direct_contributions(trace, layer).sum(0).norm(dim=-1).numpy()
            A = A / A.sum(-1, keepdims=True)
        else:
            on = trace.head_mask[layer]
            A = trace["pattern", layer].double()[on].mean(0).numpy()
        mix = 0.5 * A + 0.5 * np.eye(n)
        rolled = (mix / mix.sum(-1, keepdims=True)) @ rolled
        out.append(rolled)
    return np.stack(out)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("which", ["trace", "switched"])
def test_rollout(which, weighted, runs):
    trace = runs[which]
    got = rollout.rollout_matrices(trace, weighted=weighted)
    n = trace.n_tokens
    assert got.shape == (trace.config.n_layers, n, n)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-9)
    np.testing.assert_allclose(got, direct_rollout(trace, weighted), atol=1e-6)
    if trace.causal:
        assert not np.triu(got, 1).any()
    for query in (0, 4, n - 1):
        row = rollout.rollout_from(trace, query, weighted=weighted)  # causal: only positions ≤ query computed
        np.testing.assert_allclose(row, got[:, query], atol=1e-12)
        np.testing.assert_allclose(row.sum(-1), 1.0, atol=1e-9)


def test_rollout_refuses_what_it_cannot_do(trace):
    with pytest.raises(engine.EngineError, match="query"):
        rollout.rollout_from(trace, trace.n_tokens)
    with pytest.raises(engine.EngineError, match="too large"):
        rollout.rollout_matrices(trace, max_tokens=4)


def test_rollout_of_a_long_text_holds_one_matrix(smollm):
    trace = smollm.run_ids(list(range(1000, 1300)))
    row = rollout.rollout_from(trace, 299, weighted=True)
    assert row.shape == (smollm.config.n_layers, 300)
    np.testing.assert_allclose(row.sum(-1), 1.0, atol=1e-9)


def full_matrix(trace: engine.Trace, name: str, layer: int, head: int, normalise: bool) -> np.ndarray:
    """The whole n × n matrix pooling reads block by block, from the analyses that give it whole."""
    if name == "head_weighted":
        return value_weighted.head_weighted(trace, layer, head, normalise=normalise)
    if name == "layer_weighted":
        return value_weighted.layer_weighted(trace, layer, normalise=normalise)
    return sinks.pattern_without_first(trace, layer, head)


@pytest.mark.parametrize("name", ["head_weighted", "layer_weighted", "without_first"])
@pytest.mark.parametrize("normalise", [False, True])
def test_pooling_reads_value_weighted_and_sink_free_matrices_a_block_of_rows_at_a_time(name, normalise, switched,
                                                                                      monkeypatch):
    from engine.analysis import pooling
    from engine.trace import Trace

    layer, head = 1, 1
    want = full_matrix(switched, name, layer, head, normalise)  # [n, n]
    n = switched.n_tokens
    blocks = []
    real = Trace.row_blocks
    monkeypatch.setattr(Trace, "row_blocks", lambda self, n_heads=1, max_bytes=0: blocks.append(n_heads) or
                        real(self, n_heads, max_bytes=4 * n * n_heads * 3))  # three query rows a block
    pooled = pooling.max_pooled(switched, name, layer, head, (n, 4), normalise)
    assert blocks  # it went block by block
    np.testing.assert_allclose(pooled.maps[0], want, rtol=1e-5, atol=1e-7)
    edges = pooling.pool_edges(n, 4)
    by_block = np.maximum.reduceat(np.maximum.reduceat(want, edges[:-1], axis=1), edges[:-1], axis=0)
    np.testing.assert_allclose(pooled.maps[1], by_block, rtol=1e-5, atol=1e-7)
    assert pooled.low == pytest.approx(want.min(), abs=1e-6) and pooled.high == pytest.approx(want.max(), rel=1e-5)
    window = pooling.window(switched, name, layer, head, 2, 7, normalise)
    np.testing.assert_allclose(window, want[2:7, 2:7], rtol=1e-5, atol=1e-7)
    if normalise and name != "without_first":
        np.testing.assert_allclose(pooled.maps[0].sum(-1), 1.0, atol=1e-5)
