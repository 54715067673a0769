"""The engine's contract (DESIGN.md), checked with real numbers on the embedded models and a tiny GPT-2.

Invariants of a Trace, interventions (mask, head switches), truncation, errors, the weight cache and
thread safety. Parity with Hugging Face lives in test_parity.py.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants as hub_constants

import engine
from engine import loading

TEXT = "a fluffy blue creature roamed the verdant forest. The capital of France is"
LONG_TEXT = " ".join(["The mole dug a tunnel under the garden, and the gardener was furious."] * 30)


# ---- helpers --------------------------------------------------------------------------------------------

def above_diagonal(n: int) -> torch.Tensor:
    """bool [n, n]: True where the key (column) comes after the query (row)."""
    return torch.ones(n, n, dtype=torch.bool).triu(1)


def check_patterns(trace: engine.Trace, causal: bool) -> None:
    """Every layer's pattern is a distribution over keys, masked exactly as `causal` says."""
    n = trace.n_tokens
    upper = above_diagonal(n)
    for layer in range(trace.config.n_layers):
        p = trace["pattern", layer]
        assert p.shape == (trace.config.n_heads, n, n)
        assert torch.isfinite(p).all(), f"layer {layer}: non-finite pattern"
        assert (p >= 0).all(), f"layer {layer}: negative pattern"
        assert torch.allclose(p.sum(-1), torch.ones(trace.config.n_heads, n), atol=1e-5), f"layer {layer}"
        if causal:
            assert (p[:, upper] == 0).all(), f"layer {layer}: a query attends to a later key"
        else:
            assert (p[:, upper] > 0).any(), f"layer {layer}: bidirectional run but the upper triangle is 0"
    assert trace.causal is causal


def check_head_out_sum(trace: engine.Trace) -> None:
    """attn_out = sum of head_out over heads + b_O, in every layer."""
    for layer in range(trace.config.n_layers):
        total = trace["head_out", layer].sum(0)
        b_O = trace.weights.blocks[layer].attn.b_O
        if b_O is not None:
            total = total + b_O
        attn_out = trace["attn_out", layer]
        scale = max(float(attn_out.abs().max()), 1.0)
        assert float((total - attn_out).abs().max()) <= 1e-4 * scale, f"layer {layer}"


def check_pre_norm_residuals(trace: engine.Trace) -> None:
    """resid_mid = resid_pre + attn_out, resid_post = resid_mid + mlp_out, and blocks chain."""
    n_layers = trace.config.n_layers
    for layer in range(n_layers):
        pre, post = trace["resid_pre", layer], trace["resid_post", layer]
        mid = trace["resid_mid", layer]
        scale = max(float(post.abs().max()), 1.0)
        assert float((pre + trace["attn_out", layer] - mid).abs().max()) <= 1e-5 * scale, f"layer {layer}"
        total = pre + trace["attn_out", layer] + trace["mlp_out", layer]
        assert float((total - post).abs().max()) <= 1e-5 * scale, f"layer {layer}"
        if layer + 1 < n_layers:
            assert torch.equal(post, trace["resid_pre", layer + 1]), f"layer {layer}"


def token_bytes(token: str) -> bytes:
    """A readable token back to its bytes: '\\xe6' escapes are raw bytes, other characters UTF-8."""
    parts = re.split(r"\\x([0-9a-f]{2})", token)  # text, byte, text, byte, ..., text
    return b"".join(bytes([int(p, 16)]) if i % 2 else p.encode() for i, p in enumerate(parts))


def params_digest(model: engine.Model) -> dict[str, tuple[str, int]]:
    """SHA-256 of every parameter's bytes, with where it lives."""
    out = {}
    for key, t in model._weights.named():  # the model's own tensors, not copies
        data = t.detach().cpu().contiguous()
        out[key] = (hashlib.sha256(data.view(torch.uint8).numpy().tobytes()).hexdigest(), t.data_ptr())
    return out


def same_run(a: engine.Trace, b: engine.Trace) -> bool:
    """Bit-identical logits (or final residuals) and patterns in every layer."""
    if a.token_ids != b.token_ids:
        return False
    if a.logits is not None and not torch.equal(a.logits, b.logits):
        return False
    if not torch.equal(a.resid_final, b.resid_final):
        return False
    return all(torch.equal(a["pattern", layer], b["pattern", layer]) for layer in range(a.config.n_layers))


@pytest.fixture(params=["smollm", "minilm"])
def model(request) -> engine.Model:
    return request.getfixturevalue(request.param)


# ---- patterns and masks ---------------------------------------------------------------------------------

@pytest.mark.parametrize("causal", [True, False])
def test_patterns_are_masked_distributions(model, causal):
    """Rows sum to 1, finite, >= 0; causal=True zeroes the upper triangle exactly, also on MiniLM (an
    encoder forced causal); causal=False leaves it non-zero, also on SmolLM2 (a decoder made bidirectional)."""
    check_patterns(model.run(TEXT, causal=causal), causal)


def test_native_mask_is_the_default(smollm, minilm):
    for model, native in ((smollm, True), (minilm, False)):
        assert model.config.causal is native
        default = model.run(TEXT)  # causal=None
        check_patterns(default, native)
        assert same_run(default, model.run(TEXT, causal=native))
        other = model.run(TEXT, causal=not native)
        assert not torch.equal(default.resid_final, other.resid_final)


def test_causal_and_bidirectional_agree_on_the_last_query_of_layer_0(smollm):
    """The last token sees every key either way, and layer 0's inputs do not depend on the mask."""
    causal, bidir = smollm.run(TEXT, causal=True), smollm.run(TEXT, causal=False)
    assert torch.allclose(causal["pattern", 0][:, -1], bidir["pattern", 0][:, -1], atol=1e-6)
    assert not torch.allclose(causal["pattern", 0][:, 0], bidir["pattern", 0][:, 0], atol=1e-3)
    assert torch.equal(causal["resid_pre", 0], bidir["resid_pre", 0])


def test_scores_are_scaled_dot_products_before_masking(smollm):
    trace = smollm.run(TEXT, causal=True)
    n, d_head = trace.n_tokens, smollm.config.d_head
    upper = above_diagonal(n)
    for layer in (0, 7, smollm.config.n_layers - 1):
        scores = trace["scores", layer]
        assert scores.shape == (smollm.config.n_heads, n, n)
        assert torch.isfinite(scores).all(), "scores must be recorded before the -inf mask"
        assert (scores[:, upper] != 0).all()
        q, k = trace["q", layer], trace["k", layer]
        expected = torch.einsum("hqe,hke->hqk", q, k) / math.sqrt(d_head)
        assert torch.allclose(scores, expected, atol=1e-5, rtol=1e-5)
        pattern = torch.softmax(scores.masked_fill(upper, float("-inf")), dim=-1)
        assert torch.allclose(pattern, trace["pattern", layer], atol=1e-6)


def test_minilm_queries_from_the_weights(minilm):
    """Post-norm BERT: layer 0's q is resid_pre @ W_Q + b_Q, computed here by hand."""
    trace = minilm.run(TEXT)
    w = minilm.weights.blocks[0].attn
    q = torch.einsum("nd,hde->hne", trace["resid_pre", 0], w.W_Q) + w.b_Q[:, None]
    assert torch.allclose(trace["q", 0], q, atol=1e-5)
    pattern = torch.softmax(q @ trace["k", 0].transpose(-1, -2) / math.sqrt(minilm.config.d_head), dim=-1)
    assert torch.allclose(trace["pattern", 0], pattern, atol=1e-6)


# ---- decomposition of the residual stream ---------------------------------------------------------------

def test_head_outputs_sum_to_attention_output(model):
    check_head_out_sum(model.run(TEXT))
    check_head_out_sum(model.run(TEXT, causal=not model.config.causal))


def test_pre_norm_residual_stream_adds_up(smollm):
    trace = smollm.run(TEXT)
    check_pre_norm_residuals(trace)
    ids = torch.tensor(trace.token_ids)
    assert torch.equal(trace["resid_pre", 0], smollm.weights.W_E[ids])  # rotary: no position vector


def test_post_norm_blocks_chain(minilm):
    trace = minilm.run(TEXT)
    for layer in range(minilm.config.n_layers - 1):
        assert torch.equal(trace["resid_post", layer], trace["resid_pre", layer + 1])
    assert torch.equal(trace.resid_final, trace["resid_post", minilm.config.n_layers - 1])
    # post-norm: each block's output is LayerNorm-ed, so per-token mean ~0 before the affine weights
    ln = torch.nn.functional.layer_norm(trace["resid_mid", 0] + trace["mlp_out", 0], (minilm.config.d_model,),
                                        minilm.weights.blocks[0].ln2.w, minilm.weights.blocks[0].ln2.b,
                                        minilm.config.norm_eps)
    assert torch.allclose(ln, trace["resid_post", 0], atol=1e-5)


# ---- head switches --------------------------------------------------------------------------------------

def test_switched_off_head_writes_nothing(model):
    cfg = model.config
    layer, head = cfg.n_layers // 2, 1
    mask = model.default_head_mask()
    mask[layer, head] = False
    base, off = model.run(TEXT), model.run(TEXT, head_mask=mask)
    assert torch.equal(off.head_mask, mask)
    assert (off["head_out", layer][head] == 0).all()
    assert (off["z", layer][head] == 0).all()
    others = [h for h in range(cfg.n_heads) if h != head]
    assert (off["head_out", layer][others].abs().amax((1, 2)) > 0).all()
    # the head still attends (its pattern is recorded), it only stops writing
    assert torch.equal(off["pattern", layer], base["pattern", layer])
    for earlier in range(layer):  # nothing before the switch changes
        assert torch.equal(off["resid_post", earlier], base["resid_post", earlier])
    assert not torch.allclose(off["attn_out", layer], base["attn_out", layer])
    assert not torch.allclose(off.resid_final, base.resid_final)
    if cfg.has_lm_head:
        assert float((off.logits - base.logits).abs().max()) > 1e-3
    check_patterns(off, cfg.causal)
    check_head_out_sum(off)


def test_all_heads_off_leaves_only_the_bias(model):
    cfg = model.config
    mask = model.default_head_mask()
    mask[2] = False
    trace = model.run(TEXT, head_mask=mask)
    assert (trace["head_out", 2] == 0).all()
    b_O = model.weights.blocks[2].attn.b_O
    expected = torch.zeros(trace.n_tokens, cfg.d_model) if b_O is None else b_O.expand(trace.n_tokens, -1)
    assert torch.equal(trace["attn_out", 2], expected)
    if cfg.norm_placement == "pre":
        assert torch.equal(trace["resid_mid", 2], trace["resid_pre", 2] + expected)


def test_every_head_off_still_runs(smollm):
    mask = torch.zeros(smollm.config.n_layers, smollm.config.n_heads, dtype=torch.bool)
    trace = smollm.run(TEXT, head_mask=mask)
    check_patterns(trace, True)
    assert torch.isfinite(trace.logits).all()
    for layer in range(smollm.config.n_layers):
        assert (trace["attn_out", layer] == 0).all()


def test_grouped_query_heads_share_keys_and_values(smollm):
    cfg = smollm.config
    assert (cfg.n_heads, cfg.n_kv_heads, cfg.kv_group) == (9, 3, 3)
    trace = smollm.run(TEXT)
    for name in ("k", "v"):
        for layer in (0, cfg.n_layers - 1):
            t = trace[name, layer]
            assert t.shape == (9, trace.n_tokens, cfg.d_head)
            for group in range(3):
                first = t[3 * group]
                assert torch.equal(t[3 * group + 1], first) and torch.equal(t[3 * group + 2], first)
            assert not torch.equal(t[0], t[3]) and not torch.equal(t[3], t[6])
            assert torch.equal(t[::3], trace.kv_heads(name, layer))
    assert not torch.equal(trace["q", 0][0], trace["q", 0][1])  # queries are not shared


# ---- shapes, tokens ----------------------------------------------------------------------------------------

def test_trace_shapes_match_the_design_table(model):
    cfg = model.config
    trace = model.run(TEXT)
    n = trace.n_tokens
    expected = {
        "resid_pre": (n, cfg.d_model), "q": (cfg.n_heads, n, cfg.d_head), "k": (cfg.n_heads, n, cfg.d_head),
        "v": (cfg.n_heads, n, cfg.d_head), "scores": (cfg.n_heads, n, n), "pattern": (cfg.n_heads, n, n),
        "z": (cfg.n_heads, n, cfg.d_head), "head_out": (cfg.n_heads, n, cfg.d_model), "attn_out": (n, cfg.d_model),
        "resid_mid": (n, cfg.d_model), "mlp_out": (n, cfg.d_model), "resid_post": (n, cfg.d_model),
    }
    assert set(expected) == set(engine.NAMES)
    for name in engine.NAMES:
        for layer in range(cfg.n_layers):
            t = trace[name, layer]
            assert tuple(t.shape) == expected[name], (name, layer)
            assert t.dtype == torch.float32 and torch.isfinite(t).all(), (name, layer)
    assert len(trace.tokens) == len(trace.token_ids) == n
    assert trace.resid_final.shape == (n, cfg.d_model)
    assert trace.head_mask.shape == (cfg.n_layers, cfg.n_heads) and trace.head_mask.dtype == torch.bool
    if cfg.has_lm_head:
        assert trace.logits.shape == (n, cfg.d_vocab)
    else:
        assert trace.logits is None
    assert not trace.truncated and trace.n_tokens_in_text == n
    assert trace.nbytes() > 0
    with pytest.raises(IndexError):
        trace["pattern", cfg.n_layers]
    with pytest.raises(IndexError):
        trace["pattern", -1]
    with pytest.raises(KeyError):
        trace["no_such_name", 0]


@pytest.mark.parametrize("text", [
    TEXT,
    "Hello world, this is a test.",
    "  two leading spaces,  double  spaces\nand a new line\n\n\ttab",
    "def f(x):\n    return x ** 2  # square",
    "E = mc^2; {a: [1, 2, 3]} <b>&amp;</b> ~!@#$%",
])
def test_smollm_tokens_are_readable_and_join_to_the_text(smollm, text):
    trace = smollm.run(text)
    assert "".join(trace.tokens) == text
    for token in trace.tokens:
        assert not {"Ġ", "▁", "Ċ", "ĉ"} & set(token), token
    assert list(trace.token_ids) == smollm.tokenizer(text)["input_ids"]


def test_tokens_without_artefacts_beyond_ascii(smollm, minilm):
    text = "naïve café — 東京 🙂"
    for model in (smollm, minilm):
        tokens = model.run(text).tokens
        assert all(isinstance(t, str) and t for t in tokens)
        assert not any(ch in t for t in tokens for ch in "Ġ▁"), tokens
    # a token holding part of a UTF-8 character is shown as its bytes ('\\xe6\\x9d'); the bytes join back
    tokens = smollm.run(text).tokens
    assert any("\\x" in t for t in tokens), tokens
    assert b"".join(token_bytes(t) for t in tokens).decode() == text


def test_minilm_tokens(minilm):
    trace = minilm.run("Hello world, this is a test.")
    assert list(trace.tokens) == ["[CLS]", "hello", "world", ",", "this", "is", "a", "test", ".", "[SEP]"]
    cls, sep = minilm.tokenizer.token_to_id("[CLS]"), minilm.tokenizer.token_to_id("[SEP]")
    assert trace.token_ids[0] == cls and trace.token_ids[-1] == sep


def test_runs_do_not_mutate_the_weights(smollm, minilm):
    for model in (smollm, minilm):
        before = params_digest(model)
        cfg = model.config
        mask = model.default_head_mask()
        mask[0] = False
        mask[:, 0] = False
        model.run(TEXT)
        model.run(TEXT, causal=not cfg.causal, head_mask=mask)
        model.run(TEXT, head_mask=torch.zeros(cfg.n_layers, cfg.n_heads, dtype=torch.bool))
        model.run(LONG_TEXT, max_tokens=16)
        model.unembed(model.run(TEXT, causal=True)["resid_post", 1])
        assert params_digest(model) == before


def test_writes_through_the_public_weights_cannot_reach_the_model(smollm):
    """model.weights and trace.weights hand out copies: an in-place write changes nothing a run computes."""
    before = params_digest(smollm)
    logits = smollm.run(TEXT).logits
    trace = smollm.run(TEXT)
    for w in (smollm.weights, trace.weights):
        for t in (w.W_E, w.blocks[0].attn.W_Q, w.blocks[3].mlp.W_out, w.unembed.W_U, w.ln_final.w):
            t.add_(1)
        for _, t in w.named():
            t.zero_()
        with pytest.raises(AttributeError):
            w.blocks[0].attn.W_Q = torch.zeros(1)
        with pytest.raises(TypeError):
            w.blocks[0] = w.blocks[1]  # a tuple
    assert params_digest(smollm) == before
    assert torch.equal(smollm.run(TEXT).logits, logits)
    with pytest.raises(AttributeError):
        smollm.config = None  # a loaded model is shared: its attributes are fixed


@pytest.mark.parametrize("name", engine.NAMES)
def test_a_trace_cannot_be_written_through_what_it_hands_out(smollm, name):
    """Every tensor a trace hands out is its own copy: scribbling on it (stored names included: resid_pre,
    q, k, v, z, attn_out, mlp_out) changes nothing the next reader sees."""
    trace = smollm.run(TEXT)
    layer = 3
    before = trace[name, layer].clone()
    handed = trace[name, layer]
    handed.mul_(0).add_(7)
    assert torch.equal(trace[name, layer], before)
    if name in ("q", "k", "v", "z", "pattern", "scores", "head_out"):
        one = trace[name, layer, 2]
        one.fill_(3)
        assert torch.equal(trace[name, layer, 2], before[2])
    for other in (trace.kv_heads("k", layer), trace.head_mask, trace.resid_final, trace.logits):
        other.fill_(0)
    assert torch.equal(trace.kv_heads("k", layer), trace["k", layer][::3])
    assert trace.head_mask.all() and torch.equal(trace.logits, smollm.run(TEXT).logits)
    with pytest.raises(Exception):  # noqa: B017 - frozen dataclass: FrozenInstanceError
        trace.causal = False
    with pytest.raises(TypeError):
        trace.layers[layer]["q"] = torch.zeros(1)  # a read-only mapping


def test_analysis_arrays_are_not_writeable(smollm):
    from engine.analysis import deltas, head_stats, senses

    trace = smollm.run(TEXT)
    arrays = [deltas.head_delta_norms(trace, 2), deltas.delta_sum(trace, 2, 3).head_out,
              deltas.value_factoring(smollm, trace, 2, 1, 4).contributions, head_stats.head_overview(trace).thumbnails,
              senses.word_vectors(trace, [2, 3])]
    for array in arrays:
        with pytest.raises(ValueError, match="read-only"):
            array[...] = 0


# ---- truncation -----------------------------------------------------------------------------------------

def test_smollm_truncation(smollm):
    full = smollm.tokenizer(LONG_TEXT)["input_ids"]
    assert len(full) > 16
    trace = smollm.run(LONG_TEXT, max_tokens=16)
    assert trace.truncated and trace.n_tokens == 16
    assert trace.n_tokens_in_text == len(full)
    assert list(trace.token_ids) == full[:16]
    check_patterns(trace, True)
    short = smollm.run(TEXT, max_tokens=16 * 100)
    assert not short.truncated and short.n_tokens_in_text == short.n_tokens


def test_minilm_truncation_keeps_the_final_sep(minilm):
    full = minilm.tokenizer(LONG_TEXT)["input_ids"]
    trace = minilm.run(LONG_TEXT, max_tokens=16)
    assert trace.truncated and trace.n_tokens == 16 and trace.n_tokens_in_text == len(full)
    assert trace.tokens[0] == "[CLS]" and trace.tokens[-1] == "[SEP]"
    assert list(trace.token_ids[:15]) == full[:15]
    longer = LONG_TEXT + " " + LONG_TEXT
    full = minilm.tokenizer(longer)["input_ids"]
    assert len(full) > minilm.config.max_tokens
    whole = minilm.run(longer)  # cut to the model's own 512-token context
    assert whole.truncated and whole.n_tokens == 512 and whole.n_tokens_in_text == len(full)
    assert whole.tokens[0] == "[CLS]" and whole.tokens[-1] == "[SEP]"
    check_patterns(trace, False)


@pytest.mark.parametrize("max_tokens", [0, -1, "minilm-1"])
def test_max_tokens_out_of_range_is_refused(smollm, minilm, max_tokens):
    model = minilm if max_tokens == "minilm-1" else smollm
    limit = 1 if max_tokens == "minilm-1" else max_tokens  # MiniLM needs room for [CLS] and [SEP]
    with pytest.raises(engine.InputError, match="max_tokens"):
        model.run(TEXT, max_tokens=limit)


def test_run_ids_longer_than_the_context_is_refused(minilm):
    with pytest.raises(engine.InputError, match="512"):
        minilm.run_ids([101] + [1996] * 511 + [102])
    with pytest.raises(engine.InputError):
        minilm.run_ids([])


# ---- errors ---------------------------------------------------------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["no-such-model-xyz", "some/missing-repo"])
def test_unknown_hub_id_offline_fails_fast(name):
    start = time.monotonic()
    with pytest.raises(engine.EngineError) as err:
        engine.load(name, device="cpu")
    assert time.monotonic() - start < 30
    assert isinstance(err.value, engine.ModelLoadError)
    message = str(err.value)
    assert repr(name) in message and "hugging face" in message.lower()
    if hub_constants.HF_HUB_OFFLINE:  # conftest.py sets HF_HUB_OFFLINE=1 unless told otherwise
        assert "out of reach" in message and "not in the local cache" in message
        assert "smollm2-135m" in message and "minilm-l6" in message and "local folder" in message


def test_missing_folder_fails(tmp_path):
    with pytest.raises(engine.ModelLoadError, match="no folder"):
        engine.load("/nonexistent/folder", device="cpu")
    with pytest.raises(engine.ModelLoadError, match="config.json"):
        engine.load(str(tmp_path), device="cpu")  # a folder without config.json
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(engine.ModelLoadError, match="config.json"):
        engine.load(str(tmp_path), device="cpu")
    for empty in ("", "   "):
        with pytest.raises(engine.ModelLoadError, match="no model name"):
            engine.load(empty, device="cpu")


def test_unsupported_architecture_fails(tmp_path):
    from safetensors.torch import save_file

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5", "d_model": 8, "num_layers": 1}))
    save_file({"shared.weight": torch.zeros(4, 8)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(engine.UnsupportedModelError) as err:
        engine.load(str(tmp_path), device="cpu")
    assert isinstance(err.value, engine.EngineError)
    message = str(err.value)
    assert "'t5'" in message and "not supported" in message
    assert "GPT-2" in message and "Llama" in message and "BERT" in message


def test_supported_type_without_weights_fails(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(engine.UnsupportedModelError, match="incomplete or malformed"):  # checked before weights
        engine.load(str(tmp_path), device="cpu")
    config = {"model_type": "gpt2", "n_embd": 64, "n_head": 4, "n_layer": 2, "vocab_size": 100, "n_positions": 32}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(engine.ModelLoadError, match="no weights"):
        engine.load(str(tmp_path), device="cpu")
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 100)  # not a safetensors file
    with pytest.raises(engine.ModelLoadError, match="cannot read the weights"):
        engine.load(str(tmp_path), device="cpu")


def test_bad_load_settings_fail():
    with pytest.raises(engine.InputError, match="device"):
        engine.load("minilm-l6", device="no-such-device")
    with pytest.raises(engine.InputError, match="dtype"):
        engine.load("minilm-l6", device="cpu", dtype="int8")


@pytest.mark.parametrize("text", ["", "   \n\t", None, 42])
def test_empty_or_non_text_input_fails(model, text):
    with pytest.raises(engine.InputError) as err:
        model.run(text)
    assert "empty" in str(err.value) or "string" in str(err.value)


def test_bad_head_mask_shape_fails(model):
    cfg = model.config
    for shape in ((3, 3), (cfg.n_heads, cfg.n_layers), (cfg.n_layers, cfg.n_heads, 1), (cfg.n_layers * cfg.n_heads,)):
        with pytest.raises(engine.InputError, match="head_mask") as err:
            model.run(TEXT, head_mask=torch.ones(shape, dtype=torch.bool))
        assert str((cfg.n_layers, cfg.n_heads)) in str(err.value)
    # a nested list of the right shape is fine
    trace = model.run(TEXT, head_mask=[[True] * cfg.n_heads] * cfg.n_layers)
    assert trace.head_mask.all()


# ---- weight cache ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def weight_cache(smollm, tmp_path_factory):
    """A private cache root holding the SmolLM2 cache that `prepare_gguf` built for this session.

    Copying the session's folder (built by the same `prepare_gguf`) saves one ~30 s dequantisation;
    the test below then makes `prepare_gguf` rebuild it from the GGUF for real.
    """
    root = tmp_path_factory.mktemp("weight-cache")
    source = Path(smollm.source)
    assert loading.cache_is_valid(source)
    shutil.copytree(source, root / source.name)
    yield root, source
    shutil.rmtree(root, ignore_errors=True)  # ~0.5 GB: do not leave it to pytest's tmp retention


def flip_bytes(path: Path, at: int, count: int = 16) -> bytes:
    with path.open("r+b") as f:
        f.seek(at)
        original = f.read(count)
        f.seek(at)
        f.write(bytes(b ^ 0xFF for b in original))
    return original


@pytest.mark.slow
def test_weight_cache_is_checked_and_rebuilt(weight_cache, monkeypatch):
    from safetensors.torch import load_file

    root, source = weight_cache
    monkeypatch.setenv("ATTN_EXPLORER_CACHE", str(root))  # cache_root() reads it at call time
    assert loading.cache_root() == root

    # a valid cache is used as is
    calls: list[tuple[float, str]] = []
    folder = loading.prepare_gguf("smollm2-135m", lambda f, m: calls.append((f, m)))
    assert folder == root / source.name and loading.cache_is_valid(folder)
    weights = folder / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    assert [f for f, _ in calls] == [0.05] and weights.stat().st_mtime_ns == mtime

    # altered bytes (same size) fail the digest; restoring them passes again
    size = weights.stat().st_size
    original = flip_bytes(weights, size // 2)
    assert weights.stat().st_size == size and not loading.cache_is_valid(folder)
    flip_bytes(weights, size // 2)
    assert loading.cache_is_valid(folder)
    assert original  # the flip was not a no-op read

    # a missing or foreign manifest is invalid
    manifest = folder / "manifest.json"
    saved = manifest.read_text()
    manifest.unlink()
    assert not loading.cache_is_valid(folder)
    manifest.write_text(json.dumps({"format": loading.CACHE_FORMAT + 1, **{"files": json.loads(saved)["files"]}}))
    assert not loading.cache_is_valid(folder)
    manifest.write_text(json.dumps({"format": loading.CACHE_FORMAT, "files": {}}))
    assert not loading.cache_is_valid(folder)
    manifest.write_text(saved)
    assert loading.cache_is_valid(folder)
    assert not loading.cache_is_valid(root / "no-such-folder")

    # a truncated weights file is invalid, and prepare_gguf rebuilds it from the GGUF
    with weights.open("r+b") as f:
        f.truncate(size // 3)
    assert not loading.cache_is_valid(folder)
    calls.clear()
    rebuilt = loading.prepare_gguf("smollm2-135m", lambda f, m: calls.append((f, m)))
    assert rebuilt == folder and loading.cache_is_valid(rebuilt)
    assert weights.stat().st_size == size
    fractions = [f for f, _ in calls]
    assert len(fractions) >= 3 and fractions == sorted(set(fractions)) and all(0 <= f <= 1 for f in fractions)
    assert any("dequantis" in m for _, m in calls)
    assert not [p for p in root.iterdir() if p.name.startswith(".")], "temporary build folders left behind"

    ours, theirs = load_file(str(weights)), load_file(str(source / "model.safetensors"))
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


# ---- thread safety --------------------------------------------------------------------------------------

def test_two_threads_match_sequential_runs(smollm):
    mask = smollm.default_head_mask()
    mask[3, :4] = False
    mask[10, 2] = False
    settings = [dict(), dict(causal=False, head_mask=mask)]
    solo = [smollm.run(TEXT, **s) for s in settings]
    assert not same_run(*solo)
    with ThreadPoolExecutor(max_workers=2) as pool:
        for _ in range(4):
            together = list(pool.map(lambda s: smollm.run(TEXT, **s), settings))
            for a, b in zip(solo, together, strict=True):
                assert same_run(a, b)
                assert torch.equal(a.head_mask, b.head_mask) and a.causal == b.causal


def test_many_threads_match_solo_runs(smollm):
    cfg = smollm.config
    generator = torch.Generator().manual_seed(0)
    settings = []
    for i in range(8):
        mask = torch.rand(cfg.n_layers, cfg.n_heads, generator=generator) > 0.25
        settings.append(dict(causal=[None, True, False][i % 3], head_mask=mask))
    texts = [TEXT, "The capital of France is", "Hello world, this is a test."]
    jobs = [(texts[i % len(texts)], s) for i, s in enumerate(settings)]
    solo = [smollm.run(text, **s) for text, s in jobs]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        for _ in range(2):
            together = list(pool.map(lambda job: smollm.run(job[0], **job[1]), jobs))
            for a, b in zip(solo, together, strict=True):
                assert a.token_ids == b.token_ids
                assert torch.allclose(a.logits, b.logits, atol=1e-6, rtol=0)
                for layer in range(cfg.n_layers):
                    assert torch.allclose(a["pattern", layer], b["pattern", layer], atol=1e-6, rtol=0)


def test_concurrent_truncation_does_not_leak_between_runs(minilm):
    full = minilm.tokenize(LONG_TEXT)
    cut = minilm.tokenize(LONG_TEXT, 16)
    assert not full[1] and len(full[0]) == full[2] > 16 and cut[1] and len(cut[0]) == 16

    def job(i: int):
        return minilm.tokenize(LONG_TEXT, 16) if i % 2 else minilm.tokenize(LONG_TEXT)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(job, range(2000)))
    wrong = sum(r != (cut if i % 2 else full) for i, r in enumerate(results))
    assert wrong == 0, f"{wrong} of {len(results)} concurrent tokenizations were cut to the wrong length"


# ---- tiny random GPT-2 ----------------------------------------------------------------------------------

def test_tiny_gpt2_bidirectional(tmp_path):
    from tests.test_parity import tiny

    hf, model = tiny("gpt2", tmp_path)
    assert model.config.family == "gpt2" and model.config.causal
    trace = model.run(TEXT, causal=False)
    check_patterns(trace, False)
    check_head_out_sum(trace)
    check_pre_norm_residuals(trace)
    causal = model.run(TEXT)
    check_patterns(causal, True)
    assert torch.allclose(trace["pattern", 0][:, -1], causal["pattern", 0][:, -1], atol=1e-6)
    assert not torch.allclose(trace.logits, causal.logits, atol=1e-4)

    # layer 0's bidirectional pattern, by hand from the Hugging Face module's weights
    ids = torch.tensor(trace.token_ids)
    block = hf.transformer.h[0]
    with torch.no_grad():
        x = hf.transformer.wte(ids) + hf.transformer.wpe(torch.arange(len(ids)))
        assert torch.allclose(trace["resid_pre", 0], x, atol=1e-6)
        q, k, _ = block.attn.c_attn(block.ln_1(x)).split(model.config.d_model, dim=-1)
        n_heads, d_head = model.config.n_heads, model.config.d_head
        q = q.view(len(ids), n_heads, d_head).transpose(0, 1)
        k = k.view(len(ids), n_heads, d_head).transpose(0, 1)
        pattern = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d_head), dim=-1)
    assert torch.allclose(trace["pattern", 0], pattern, atol=1e-6)


def test_a_verified_cache_is_not_read_again_until_a_file_changes(tmp_path, monkeypatch):
    """cache_is_valid reads each file once: later checks trust a file whose size, times and inode are those it had
    when its digest was checked, and read it again when any of them moved, so a changed byte is still found."""
    folder = tmp_path / "cache-v1"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (folder / "config.json").write_text("{}")
    loading._write_manifest(folder)
    read: list[str] = []
    digest = loading._sha256
    monkeypatch.setattr(loading, "_sha256", lambda path: read.append(path.name) or digest(path))

    assert loading.cache_is_valid(folder) and sorted(read) == ["config.json", "model.safetensors"]
    read.clear()  # files that changed a moment ago are not trusted yet: the file system's clock is coarse
    assert loading.cache_is_valid(folder) and sorted(read) == ["config.json", "model.safetensors"]

    later = time.time_ns() + 10 * loading.VERIFIED_MARGIN_NS  # as if the check ran long after the files were made
    monkeypatch.setattr(loading, "now_ns", lambda: later)
    read.clear()
    assert loading.cache_is_valid(folder) and len(read) == 2  # checked, and now remembered
    read.clear()
    assert loading.cache_is_valid(folder) and read == []  # nothing read again

    weights = folder / "model.safetensors"
    status = weights.stat()
    flip_bytes(weights, 100)  # same size; the modification time set back as it was: only ctime moved
    os.utime(weights, ns=(status.st_atime_ns, status.st_mtime_ns))
    assert weights.stat().st_size == status.st_size and weights.stat().st_mtime_ns == status.st_mtime_ns
    assert not loading.cache_is_valid(folder) and read == ["model.safetensors"]
    flip_bytes(weights, 100)
    assert loading.cache_is_valid(folder)
    (folder / "config.json").write_text("{}")  # rewritten with the same bytes: read again, still valid
    read.clear()
    assert loading.cache_is_valid(folder) and read == ["config.json"]
    loading._verified_path(folder).write_text("not json")  # a damaged record only costs a read
    read.clear()
    assert loading.cache_is_valid(folder) and sorted(read) == ["config.json", "model.safetensors"]
