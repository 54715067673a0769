"""Per-head access to a trace, trace[name, layer, head], equals slicing the all-heads tensor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.analysis import head_stats, pooling

NAMES = ("q", "k", "v", "scores", "pattern", "z", "head_out")


@pytest.mark.parametrize("fixture", ["smollm", "minilm"])
def test_one_head_equals_the_slice_of_all_heads(fixture, request):
    model = request.getfixturevalue(fixture)
    trace = model.run("The gardener trapped the burrowing mole")
    for layer in (0, model.config.n_layers - 1):
        for head in range(model.config.n_heads):
            for name in NAMES:
                whole = trace[name, layer][head]
                assert torch.allclose(trace[name, layer, head], whole, atol=1e-5, rtol=1e-5), (name, layer, head)


def test_one_head_rejects_bad_indices(minilm):
    trace = minilm.run("a mole")
    with pytest.raises(IndexError):
        trace["pattern", 0, minilm.config.n_heads]
    with pytest.raises(KeyError):
        trace["resid_pre", 0, 0]


def _block_max(a, edges):
    return np.maximum.reduceat(np.maximum.reduceat(a, edges[:-1], axis=-1), edges[:-1], axis=-2)


@pytest.mark.parametrize("fixture", ["smollm", "minilm"])
def test_block_by_block_views_equal_the_whole_patterns(fixture, request):
    """Rows, pooled images, windows and per-head overviews computed a block at a time equal the same numbers
    computed from whole patterns."""
    model = request.getfixturevalue(fixture)
    trace = model.run("The gardener trapped the burrowing mole under the lawn. " * 25)
    n = trace.n_tokens
    masked = trace.masked().numpy()
    for layer, head in ((0, 0), (model.config.n_layers - 1, model.config.n_heads - 1)):
        pattern = trace["pattern", layer][head].numpy()
        scores = np.where(masked, -np.inf, trace["scores", layer][head].numpy())
        assert torch.equal(trace.pattern_rows(layer, slice(40, 90), head), trace["pattern", layer][head][40:90])
        assert torch.equal(trace.masked(slice(40, 90)), trace.masked()[40:90])
        assert torch.allclose(trace.scores_rows(layer, slice(3, 9))[head], trace["scores", layer][head][3:9])
        edges = pooling.pool_edges(n, 48)
        raw_scores = trace["scores", layer][head].numpy()
        for name, whole, raw in (("pattern", pattern, pattern), ("scores", scores, raw_scores)):
            pooled = pooling.max_pooled(trace, name, layer, head, (48, 7))
            for size, got in zip((48, 7), pooled.maps, strict=True):
                assert np.array_equal(got, _block_max(whole, pooling.pool_edges(n, size)))
            finite = whole[np.isfinite(whole)]
            assert (pooled.low, pooled.high) == (finite.min(), finite.max())
            np.testing.assert_allclose(pooling.window(trace, name, layer, head, 10, 70), raw[10:70, 10:70],
                                       rtol=1e-6, atol=1e-6)
    overview = head_stats.head_overview(trace, thumb_px=48)
    for layer in (0, 3):
        p = trace["pattern", layer].double()  # [n_heads, n, n]
        np.testing.assert_allclose(overview.thumbnails[layer], _block_max(p.float().numpy(), edges), rtol=0, atol=0)
        entropy = -(torch.where(p > 0, p * torch.log2(p), 0.0)).sum(-1).mean(-1)
        np.testing.assert_allclose(overview.entropy[layer], entropy.numpy(), rtol=1e-5)
        np.testing.assert_allclose(overview.first[layer], p[:, :, 0].mean(-1).numpy(), rtol=1e-6)
        np.testing.assert_allclose(overview.self[layer], p.diagonal(dim1=1, dim2=2).mean(-1).numpy(), rtol=1e-6)
        previous = p.diagonal(offset=-1, dim1=1, dim2=2).mean(-1)
        np.testing.assert_allclose(overview.previous[layer], previous.numpy(), rtol=1e-6)
