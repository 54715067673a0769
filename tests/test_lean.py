"""Lean traces (`model.run(..., lean=True)`, and every `keep=("pattern",)` run): they hold each layer's resid_pre
only and recompute the rest when it is read. Every name of every layer must equal a full run's bit for bit (the
same operations on the same input), in every family, with head switches, patches and either mask; and a lean
trace must hold only what it says."""

from __future__ import annotations

import threading

import pytest
import torch
from families import CASES, build

import engine
from engine import RunCancelled
from engine.batch import run_variants

TEXT = "The gardener trapped the burrowing mole under the lawn, and the mole dug again."
NAMES = ("resid_pre", "q", "k", "v", "scores", "pattern", "z", "head_out", "attn_out", "resid_mid", "mlp_out",
         "resid_post")


def assert_same(full: engine.Trace, lean: engine.Trace) -> None:
    """Every name of every layer, every stored record entry and the logits, bit for bit."""
    assert lean.lean and not full.lean
    for layer in range(full.config.n_layers):
        for name in NAMES:
            assert torch.equal(full[name, layer], lean[name, layer]), (name, layer)
        assert sorted(full.layers[layer]) == sorted(lean.layers[layer]), layer
        for name, stored in full.layers[layer].items():
            assert torch.equal(stored, lean.layers[layer][name]), (name, layer)
        assert torch.equal(full.kv_heads("k", layer), lean.kv_heads("k", layer))
    assert torch.equal(full.resid_final, lean.resid_final)
    if full.logits is not None:
        assert torch.equal(full.logits, lean.logits)


def held_bytes(trace: engine.Trace) -> int:
    """What a lean trace should hold: resid_pre of each layer, the last resid_post and the final-normed one (the
    same tensor without a final norm)."""
    n, d = trace.n_tokens, trace.config.d_model
    return (trace.config.n_layers + ends(trace)) * n * d * trace.resid_final_.element_size()


def ends(trace: engine.Trace) -> int:
    return 1 if trace._weights.ln_final is None else 2


@pytest.mark.parametrize("fixture", ["smollm", "minilm"])
def test_a_lean_trace_reads_exactly_as_a_full_one(fixture, request):
    model = request.getfixturevalue(fixture)
    assert_same(model.run(TEXT), model.run(TEXT, lean=True))
    assert_same(model.run(TEXT, attention="explicit"), model.run(TEXT, attention="explicit", lean=True))


@pytest.mark.parametrize("fixture", ["smollm", "minilm"])
def test_lean_with_switches_patch_and_the_other_mask(fixture, request):
    """The recomputation uses the run's own head switches, patch and mask, not the model's defaults."""
    model = request.getfixturevalue(fixture)
    other = model.run(TEXT.upper())
    settings = {"causal": not model.config.causal, "head_mask": model.head_mask_without([(0, 1), (2, 3)]),
                "patch": {(1, 0): {4: other["z", 1, 0][4]}, (2, 1): {2: other["z", 2, 1][2]}}}
    full, lean = model.run(TEXT, **settings), model.run(TEXT, lean=True, **settings)
    assert_same(full, lean)
    assert not torch.equal(lean["z", 1], model.run(TEXT, lean=True)["z", 1])  # the settings did change it


@pytest.mark.parametrize("case", sorted(CASES))
def test_lean_in_every_family(case, tmp_path):
    """Windows, soft-caps, q/k norms, output norms, parallel blocks, per-layer rotary bases: all recomputed."""
    build(case, tmp_path)
    model = engine.load(str(tmp_path), device="cpu")
    text = "The quick brown fox jumps over the lazy dog because it was bored"
    assert_same(model.run(text), model.run(text, lean=True))
    assert_same(model.run(text, attention="explicit"), model.run(text, keep=("pattern",)))


@pytest.mark.parametrize("fixture", ["smollm", "minilm"])
def test_a_lean_trace_holds_the_residual_stream_only(fixture, request):
    model = request.getfixturevalue(fixture)
    full, lean = model.run(TEXT), model.run(TEXT, lean=True)
    assert lean.nbytes() == held_bytes(lean)
    for layer in range(model.config.n_layers):  # reading recomputes; it adds nothing to what the trace holds
        lean["z", layer], lean["q", layer]
    assert lean.nbytes() == held_bytes(lean)
    d, n_heads, n_kv, d_head = model.config.d_model, model.config.n_heads, model.config.n_kv_heads, model.config.d_head
    per_token_layer = 4 * d + (n_heads + 2 * n_kv) * d_head + (d if model.config.norm_placement == "post" else 0)
    n, n_layers = full.n_tokens, model.config.n_layers
    assert full.nbytes() == 4 * n * (n_layers * per_token_layer + ends(full) * d)


def test_kept_patterns_with_a_lean_trace(smollm):
    """keep=("pattern",) runs are lean: they hold the residual stream and the patterns not yet handed out."""
    trace = smollm.run(TEXT, keep=("pattern",))
    n, heads = trace.n_tokens, smollm.config.n_heads
    assert trace.lean and trace.nbytes() == held_bytes(trace) + smollm.config.n_layers * heads * n * n * 4
    patterns = trace.patterns()
    assert trace.nbytes() == held_bytes(trace)
    assert all(torch.equal(p, trace["pattern", layer]) for layer, p in enumerate(patterns))


def test_a_lean_run_reuses_lean_layers_only(smollm):
    """A reused layer is the same stored tensor; lean and full runs never mix layers."""
    switched = smollm.head_mask_without([(20, 3)])
    lean, full = smollm.run(TEXT, lean=True), smollm.run(TEXT)
    again = smollm.run(TEXT, lean=True, head_mask=switched, reuse=lean)
    assert again.layers[19]["resid_pre"] is lean.layers[19]["resid_pre"]
    assert again.layers[20]["resid_pre"] is lean.layers[20]["resid_pre"]  # layer 20's input is unchanged
    assert again.layers[21]["resid_pre"] is not lean.layers[21]["resid_pre"]
    assert_same(smollm.run(TEXT, head_mask=switched), again)
    mixed = smollm.run(TEXT, lean=True, head_mask=switched, reuse=full)
    assert mixed.layers[5]["resid_pre"] is not full.layers[5]["resid_pre"]
    assert smollm.run(TEXT, head_mask=switched, reuse=lean).layers[5]["resid_pre"] is not lean.layers[5]["resid_pre"]


def test_a_stopped_lean_run_resumes_exactly(smollm):
    calls = iter(range(100))
    with pytest.raises(RunCancelled) as stopped:
        smollm.run(TEXT, lean=True, cancel=lambda: next(calls) >= 7)
    prefix = stopped.value.prefix
    assert prefix.lean and len(prefix.layers) == 7 and all(set(stored) == {"resid_pre"} for stored in prefix.layers)
    assert_same(smollm.run(TEXT), smollm.run(TEXT, lean=True, reuse=prefix))


def test_what_a_lean_trace_hands_out_cannot_change_it(smollm):
    lean = smollm.run(TEXT, lean=True)
    q, mlp_out = lean["q", 3], lean["mlp_out", 3]
    q.fill_(7.0), mlp_out.fill_(7.0)
    assert not torch.equal(lean["q", 3], q) and not torch.equal(lean["mlp_out", 3], mlp_out)
    with pytest.raises(TypeError):
        lean.layers[3]["q"] = q  # a record is a read-only mapping


def test_lean_reads_from_many_threads(smollm):
    """Sessions may read one shared trace at once: each read gets its own layer's numbers."""
    full, lean = smollm.run(TEXT), smollm.run(TEXT, lean=True)
    wrong: list[tuple[str, int]] = []

    def read(names: tuple[str, ...]) -> None:
        for layer in range(smollm.config.n_layers):
            for name in names:
                if not torch.equal(full[name, layer], lean[name, layer]):
                    wrong.append((name, layer))

    threads = [threading.Thread(target=read, args=(names,)) for names in [("q", "z"), ("mlp_out",), ("k", "v")]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


def test_patching_sweeps_on_a_lean_base(smollm):
    """engine.batch reads a base's keys and values: a lean base gives the same variants as a full one."""
    full, lean = smollm.run(TEXT), smollm.run(TEXT, lean=True)
    other = smollm.run(TEXT.upper())
    variants = [(4, {2: {5: other["z", 4, 2][5]}}), (25, {})]
    assert torch.equal(run_variants(full, variants), run_variants(lean, variants))
