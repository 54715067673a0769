"""Per-head access to a trace, trace[name, layer, head], equals slicing the all-heads tensor."""

from __future__ import annotations

import pytest
import torch

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
