"""engine.analysis on the real embedded models: deltas, lens, value factoring, projections, senses, counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import engine
from components.content import GPT3, GPT3_TOTAL_QUOTED, SENSE_PRESETS
from engine.analysis import deltas, lens, params, projections, senses

TEXT = "The gardener trapped the burrowing mole"


@pytest.fixture(scope="module", params=["smollm", "minilm"])
def model(request):
    return request.getfixturevalue(request.param)


_RUNS: dict[tuple[str, str], object] = {}


def run(model, text: str):
    """One run per model and text for the whole module (the machine is small)."""
    key = (model.config.name, text)
    if key not in _RUNS:
        _RUNS[key] = model.run(text)
    return _RUNS[key]


@pytest.fixture(scope="module")
def trace(model):
    return run(model, TEXT)


# ---- deltas ----------------------------------------------------------------------------------------------

def test_deltas_sum_to_attention_output(trace):
    for layer in range(trace.config.n_layers):
        head_out = trace["head_out", layer].double()  # [n_heads, n, d_model]
        b_O = trace.weights.blocks[layer].attn.b_O
        total = head_out.sum(0) + (b_O.double() if b_O is not None else 0)
        attn_out = trace["attn_out", layer].double()
        assert (total - attn_out).abs().max() < 1e-5 * max(attn_out.abs().max(), 10)  # float32 rounding
    for token in range(trace.n_tokens):
        ds = deltas.delta_sum(trace, trace.config.n_layers - 1, token)
        assert ds.error < 1e-4
        assert np.allclose(ds.heads_sum + ds.b_O, ds.attn_out, atol=1e-4)
        assert ds.along.sum() + ds.bias_along == pytest.approx(ds.attn_norm, rel=1e-5)  # the waterfall adds up


def test_head_delta_norms(trace):
    norms = deltas.head_delta_norms(trace, 1)
    assert norms.shape == (trace.config.n_heads, trace.n_tokens)
    assert np.allclose(norms[2, 3], np.linalg.norm(trace["head_out", 1][2, 3].numpy()), rtol=1e-5)


def test_switched_off_head_adds_nothing(model):
    mask = model.default_head_mask()
    mask[1, 0] = False
    trace = model.run(TEXT, head_mask=mask)
    assert deltas.head_delta_norms(trace, 1)[0].max() == 0
    vf = deltas.value_factoring(model, trace, 1, 0, 3)
    assert vf.weights.max() == 0 and vf.error == 0


def test_value_factoring(model, trace):
    cfg = model.config
    head = cfg.n_heads - 1
    vf = deltas.value_factoring(model, trace, 2, head, trace.n_tokens - 1)
    assert vf.value_down_shape == (cfg.d_model, cfg.d_head) and vf.value_up_shape == (cfg.d_head, cfg.d_model)
    assert vf.value_down_params == vf.value_up_params == cfg.d_model * cfg.d_head
    assert vf.kv_head == head // cfg.kv_group and vf.kv_group == cfg.n_heads // cfg.n_kv_heads
    assert vf.weights.sum() == pytest.approx(1.0, abs=1e-5)
    assert vf.error < 1e-4  # Σ_j w_j v_j W_O[h] is the head's Δe
    # each key's contribution, computed here from the pattern, v and W_O: ‖pattern[h, q, j] · v_j W_O[h]‖
    query = trace.n_tokens // 2
    mid = deltas.value_factoring(model, trace, 2, head, query)
    alpha = trace["pattern", 2][head, query].double()  # [n_tokens]
    v_out = trace["v", 2][head].double() @ model.weights.blocks[2].attn.W_O[head].double()  # [n_tokens, d_model]
    expected = (alpha[:, None] * v_out).norm(dim=-1).numpy()
    assert np.allclose(mid.contribution_norms, expected, rtol=1e-5, atol=1e-7)  # float32 pattern, two routes
    assert mid.contribution_norms.max() > 0
    if cfg.causal:
        assert mid.contribution_norms[query + 1:].max() == 0  # keys after the query contribute nothing
        first = deltas.value_factoring(model, trace, 2, head, 0)
        assert first.weights[1:].max() == 0  # the first token sees only itself


def test_delta_lens(model, trace):
    readings = lens.delta_lens(model, trace, 1, 0, trace.n_tokens - 1, k=5)
    assert tuple(readings) == lens.DELTA_LENS_ROWS
    for r in readings.values():
        assert len(r.up) == len(r.down) == 5
        ups, downs = [v for _, v in r.up], [v for _, v in r.down]
        assert ups == sorted(ups, reverse=True) and downs == sorted(downs) and ups[-1] >= downs[-1]
    # the Δe row decodes the head's output directly: its top logit is the largest entry of unembed(Δe)
    delta = trace["head_out", 1, 0][trace.n_tokens - 1]
    logits = model.unembed(delta[None])[0]
    assert readings["delta"].up[0][1] == pytest.approx(float(logits.max()), rel=1e-5)


def test_logit_lens_of_final_residual_matches_logits(smollm):
    trace = run(smollm, TEXT)
    top = lens.logit_lens(smollm, trace["resid_post", smollm.config.n_layers - 1][-1:], k=1)[0]
    assert top.up[0][0] == smollm.readable([int(trace.logits[-1].argmax())])[0]


# ---- projections ------------------------------------------------------------------------------------------

def test_pca_is_deterministic_and_orthonormal():
    x = np.random.default_rng(0).normal(size=(40, 10)) * np.arange(1, 11)
    a, b = projections.pca(x, 3), projections.pca(-x[::-1], 3)
    assert np.allclose(a.components @ a.components.T, np.eye(3), atol=1e-10)
    assert np.all(np.diff(a.explained) <= 0) and 0 < a.explained.sum() <= 1
    assert np.allclose(a.components, b.components)  # same directions whatever the order or sign of the data
    for row in a.components:
        assert row[np.argmax(np.abs(row))] > 0
    few = projections.pca(x[:2], 3)  # fewer points than components: the rest are zero
    assert few.explained[1:].sum() == pytest.approx(0, abs=1e-12) and few.transform(x).shape == (40, 3)


def test_qk_projection_is_reproducible(model, trace):
    last = trace.n_tokens - 1
    p1 = projections.qk_projection(trace, 2, 1, last, k=3)
    p2 = projections.qk_projection(model.run(TEXT), 2, 1, last, k=3)
    assert p1.queries.shape == p1.keys.shape == (trace.n_tokens, 3)
    np.testing.assert_allclose(p1.queries, p2.queries, atol=1e-4)
    np.testing.assert_allclose(p1.keys, p2.keys, atol=1e-4)
    np.testing.assert_allclose(p1.basis.explained, p2.basis.explained, atol=1e-6)
    assert p1.top_keys(1)[0] == int(trace["pattern", 2][1, last].argmax())
    np.testing.assert_allclose(p1.weights, trace["pattern", 2][1, last].numpy(), rtol=1e-5, atol=1e-7)
    if trace.causal:
        assert projections.qk_projection(trace, 2, 1, 0).top_keys(3)[0] == 0  # the first query sees only itself


def test_delta_projection_and_path(trace):
    L = trace.config.n_layers
    p = projections.delta_projection(trace, 1, skip=[0])
    assert p.before.shape == p.after.shape == (trace.n_tokens, 3)
    one = projections.delta_projection(trace, 1, head=0)
    np.testing.assert_allclose(one.delta_norms, deltas.head_delta_norms(trace, 1)[0], rtol=1e-5)
    chosen = [1, trace.n_tokens - 1]
    path = projections.layer_path(trace, chosen)
    assert path.coords.shape == (2, L + 1, 3)
    # the path is the residual stream at each layer (embedding, then each block's output) in the fitted basis
    stream = torch.stack([trace["resid_pre", 0]] + [trace["resid_post", layer] for layer in range(L)])
    expected = path.basis.transform(stream[:, chosen].transpose(0, 1).double().numpy())
    np.testing.assert_allclose(path.coords, expected, atol=1e-6)


# ---- word senses ------------------------------------------------------------------------------------------

def test_find_word(model):
    text = "A mole, a Mole and a molehill: moles."
    spans = senses.find_word(model, text, "mole")
    assert len(spans) == 2  # whole words, any case; not 'molehill' or 'moles'
    tokens = run(model, text).tokens
    assert ["".join(tokens[i] for i in s).strip().lower() for s in spans] == ["mole", "mole"]
    assert senses.find_word(model, text, "giraffe") == []
    assert senses.find_word(model, text, " ") == []
    burrowing = senses.find_word(model, TEXT, "burrowing")
    assert len(burrowing) == 1 and len(burrowing[0]) == 2  # split into two sub-tokens in both vocabularies
    trace = run(model, TEXT)
    last = senses.word_vectors(trace, burrowing[0], "last")
    mean = senses.word_vectors(trace, burrowing[0], "mean")
    assert last.shape == mean.shape == (model.config.n_layers + 1, model.config.d_model)
    assert not np.allclose(last, mean)


def _senses(model, preset: str):
    sentences = SENSE_PRESETS[preset]["sentences"]
    word = SENSE_PRESETS[preset]["word"]
    traces = [run(model, text) for _, text in sentences]
    spans = [senses.find_word(model, text, word)[-1] for _, text in sentences]
    vectors = np.stack([senses.word_vectors(t, s) for t, s in zip(traces, spans, strict=True)])
    return [label for label, _ in sentences], traces, spans, senses.similarity_by_layer(vectors)


@pytest.mark.parametrize("name", ["minilm", "smollm"])
def test_mole_animals_closer_than_chemistry(request, name):
    labels, _, _, sim = _senses(request.getfixturevalue(name), "mole")
    last = sim[-1]  # after the last block
    animals = [i for i, label in enumerate(labels) if label == "animal"]
    chemistry = [i for i, label in enumerate(labels) if label == "chemistry"]
    a, b = animals[:2]
    for c in chemistry:
        assert last[a, b] > last[a, c] and last[a, b] > last[b, c]


@pytest.mark.parametrize("name", ["minilm", "smollm"])
@pytest.mark.parametrize("preset", list(SENSE_PRESETS))
def test_same_sense_closer_at_last_layer(request, name, preset):
    labels, traces, spans, sim = _senses(request.getfixturevalue(name), preset)
    curves = senses.sense_curves(sim, labels)
    assert curves["same"][-1] > curves["different"][-1]
    assert np.allclose(np.diagonal(sim, axis1=1, axis2=2), 1, atol=1e-5)
    div = senses.divergent_heads(traces, [s[-1] for s in spans], labels)
    assert div.shape == (traces[0].config.n_layers, traces[0].config.n_heads) and div.min() >= 0
    top = senses.top_heads(div, 3)
    assert [v for *_, v in top] == sorted(div.ravel(), reverse=True)[:3]
    coords, basis = senses.sense_trajectories(np.stack([senses.word_vectors(t, s)
                                                          for t, s in zip(traces, spans, strict=True)]))
    assert coords.shape == (len(labels), traces[0].config.n_layers + 1, 2)


def test_sense_lens_and_attended(minilm):
    _, traces, spans, _ = _senses(minilm, "bank")
    vectors = np.stack([senses.word_vectors(t, s) for t, s in zip(traces, spans, strict=True)])
    readings = lens.sense_lens(minilm, vectors, k=3)
    assert len(readings) == len(traces) and len(readings[0]) == minilm.config.n_layers + 1 and len(readings[0][0]) == 3
    assert readings[0][0][0] == "bank"  # the embedding of 'bank' decodes to itself through W_E
    seen = senses.attended(traces[0], 0, 0, spans[0][-1], 3)
    assert len(seen) == 3 and sum(w for *_, w in seen) <= 1 + 1e-6


def test_sense_pairs():
    same, different = senses.sense_pairs(["a", "a", "b", ""])
    assert same == [(0, 1)] and different == [(0, 2), (1, 2)]


# ---- parameter counts -------------------------------------------------------------------------------------

def test_gpt3_counts_are_the_notes_figures():
    g = GPT3
    assert g.per_matrix == 1_572_864
    assert g.per_head == 6_291_456
    assert g.per_block == 603_979_776
    assert g.all_attention == 57_982_058_496
    assert GPT3_TOTAL_QUOTED == 175_000_000_000
    assert 0.3 < g.all_attention / g.total_estimate < 0.35 and abs(g.total_estimate / GPT3_TOTAL_QUOTED - 1) < 0.01


def test_loaded_model_counts(model):
    cats = params.param_categories(model)
    assert sum(cats.values()) == model.n_params()
    assert sum(t.numel() for _, t in model._weights.named()) >= model.n_params()  # tied tensors counted once
    a = params.attention_counts(model)
    cfg = model.config
    assert a.all_attention == cats["attention"] == sum(a.per_block)
    assert a.per_matrix == dict.fromkeys(("W_Q", "W_K", "W_V", "W_O"), cfg.d_model * cfg.d_head)
    assert a.per_block[0] == (2 * cfg.n_heads + 2 * cfg.n_kv_heads) * cfg.d_model * cfg.d_head + a.biases_per_block


def test_smollm_counts(smollm):
    cats = params.param_categories(smollm)
    a = params.attention_counts(smollm)
    assert smollm.n_params() == 134_515_008
    assert cats == {"embeddings": 28_311_552, "attention": 26_542_080, "MLPs": 79_626_240, "norms": 35_136,
                    "unembedding": 0}  # the unembedding is tied to the token embedding
    assert (a.per_head, a.per_head_unshared, a.per_block[0], a.kv_group) == (98_304, 147_456, 884_736, 3)


def test_minilm_counts(minilm):
    cats = params.param_categories(minilm)
    a = params.attention_counts(minilm)
    assert minilm.n_params() == 22_565_376
    assert cats == {"embeddings": 11_917_824, "attention": 3_548_160, "MLPs": 7_089_408, "norms": 9_984,
                    "unembedding": 0}
    assert (a.per_head, a.biases_per_block, a.per_block[0]) == (49_152, 1_536, 591_360)


def test_find_word_without_offsets(model):
    """A tokenizer without offset mapping: tokens are laid along the text instead, with the same result."""
    class NoOffsets:
        is_fast = False

        def __init__(self, tok):
            self.tok, self.all_special_ids = tok, tok.all_special_ids

        def __call__(self, text, **kwargs):
            return self.tok(text, verbose=False)

        def decode(self, *args, **kwargs):
            return self.tok.decode(*args, **kwargs)

        def convert_ids_to_tokens(self, *args):
            return self.tok.convert_ids_to_tokens(*args)

    slow = engine.Model(model.config, model._weights, NoOffsets(model.tokenizer), model.device)
    text = "A mole, a Mole and a molehill: moles. The burrowing mole"
    for word in ("mole", "burrowing", "giraffe"):
        assert senses.find_word(slow, text, word) == senses.find_word(model, text, word)
