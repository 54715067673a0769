"""Parity of the engine's own forward pass with Hugging Face transformers (eager attention, float32)."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
)

import engine
from engine import loading

TEXT = "The quick brown fox jumps over the lazy dog because it was bored"


def hf_forward(hf, ids: list[int]):
    with torch.no_grad():
        return hf(torch.tensor([ids]), output_attentions=True, output_hidden_states=True)


def hidden_states_of(trace: engine.Trace) -> list[torch.Tensor]:
    """The engine's equivalent of Hugging Face's hidden_states tuple."""
    n_layers = trace.config.n_layers
    if trace.config.norm_placement == "post":  # BERT: embeddings, then each block's output
        return [trace["resid_pre", 0]] + [trace["resid_post", layer] for layer in range(n_layers)]
    return [trace["resid_pre", layer] for layer in range(n_layers)] + [trace.resid_final]


# ---- small random-weight models of each family, saved as local folders --------------------------------

def tiny(kind: str, folder, seed: int = 0):
    torch.manual_seed(seed)
    tokenizer_src = loading.resolve("minilm-l6" if kind.startswith("bert") else "smollm2-135m", lambda f, m: None)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_src)
    vocab = len(tokenizer)
    if kind == "gpt2":
        hf = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=64, n_embd=64, n_layer=3, n_head=4))
    elif kind == "llama":
        hf = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                                          num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=64,
                                          rope_theta=500.0, tie_word_embeddings=False))
    elif kind == "bert":
        hf = BertModel(BertConfig(vocab_size=vocab, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                                  intermediate_size=128, max_position_embeddings=64), add_pooling_layer=False)
    else:  # bert-mlm: an encoder with its masked-LM head
        hf = BertForMaskedLM(BertConfig(vocab_size=vocab, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                        intermediate_size=128, max_position_embeddings=64))
    # random weights are tiny; widen them so differences are not hidden by small magnitudes
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    hf.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    extra = {"add_pooling_layer": False} if kind == "bert" else {}
    ref = type(hf).from_pretrained(folder, attn_implementation="eager", **extra).eval()
    return ref, engine.load(str(folder), device="cpu")


def assert_tiny_matches(kind: str, trace: engine.Trace, out) -> None:
    """The engine's trace (on any device) against Hugging Face's outputs on the CPU."""
    if kind == "bert":
        assert trace.logits is None
    else:
        assert (trace.logits.cpu() - out.logits[0]).abs().max() < 1e-4
    for ours, theirs in zip(hidden_states_of(trace), out.hidden_states, strict=True):
        assert (ours.cpu() - theirs[0]).abs().max() < 1e-4
    for layer, theirs in enumerate(out.attentions):
        assert (trace["pattern", layer].cpu() - theirs[0]).abs().max() < 1e-5


@pytest.mark.parametrize("attention", ["fused", "explicit"])
@pytest.mark.parametrize("kind", ["gpt2", "llama", "bert", "bert-mlm"])
def test_tiny_random_models_match_transformers(kind, attention, tmp_path):
    hf, model = tiny(kind, tmp_path)
    trace = model.run(TEXT, attention=attention)
    assert_tiny_matches(kind, trace, hf_forward(hf, trace.token_ids))


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here; runs where there is one")


@CUDA
@pytest.mark.parametrize("attention", ["fused", "explicit"])
@pytest.mark.parametrize("kind", ["gpt2", "llama", "bert", "bert-mlm"])
def test_tiny_random_models_on_cuda_match_transformers(kind, attention, tmp_path):
    hf, _ = tiny(kind, tmp_path)
    model = engine.load(str(tmp_path), device="cuda")
    trace = model.run(TEXT, attention=attention)
    assert trace["resid_pre", 0].device.type == "cuda"
    assert_tiny_matches(kind, trace, hf_forward(hf, trace.token_ids))
    assert model.n_params() == sum(p.numel() for p in hf.parameters())


def test_tiny_llama_shares_key_value_heads(tmp_path):
    _, model = tiny("llama", tmp_path)
    assert (model.config.n_heads, model.config.n_kv_heads) == (8, 2)
    trace = model.run(TEXT)
    k = trace["k", 1]  # [n_heads, n, d_head], each key head repeated for the 4 query heads that share it
    assert k.shape[0] == 8
    assert torch.equal(k[0], k[3]) and not torch.equal(k[0], k[4])


def relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).abs().max() / theirs.abs().max())


@pytest.mark.slow
def test_smollm2_matches_transformers(smollm, smollm_hf):
    trace = smollm.run("a fluffy blue creature roamed the verdant forest. The capital of France is")
    out = hf_forward(smollm_hf, trace.token_ids)
    for ours, theirs in zip(hidden_states_of(trace), out.hidden_states, strict=True):
        assert relative_error(ours, theirs[0]) < 1e-5
    for layer, theirs in enumerate(out.attentions):
        assert (trace["pattern", layer] - theirs[0]).abs().max() < 1e-4
    assert (trace.logits - out.logits[0]).abs().max() < 1e-3
    assert torch.equal(trace.logits.argmax(-1), out.logits[0].argmax(-1))


@CUDA
@pytest.mark.slow
def test_smollm2_on_cuda_matches_transformers(smollm_hf):
    model = engine.load("smollm2-135m", device="cuda")
    trace = model.run("a fluffy blue creature roamed the verdant forest. The capital of France is")
    out = hf_forward(smollm_hf, trace.token_ids)  # on the CPU
    for ours, theirs in zip(hidden_states_of(trace), out.hidden_states, strict=True):
        assert relative_error(ours.cpu(), theirs[0]) < 1e-5
    for layer, theirs in enumerate(out.attentions):
        assert (trace["pattern", layer].cpu() - theirs[0]).abs().max() < 1e-4
    assert (trace.logits.cpu() - out.logits[0]).abs().max() < 1e-3
    assert torch.equal(trace.logits.argmax(-1).cpu(), out.logits[0].argmax(-1))


@pytest.mark.slow
def test_minilm_matches_transformers(minilm, minilm_hf):
    trace = minilm.run("The mole dug a tunnel under the garden, and the gardener was furious.")
    out = hf_forward(minilm_hf, trace.token_ids)
    assert trace.logits is None and not trace.causal
    for ours, theirs in zip(hidden_states_of(trace), out.hidden_states, strict=True):
        assert relative_error(ours, theirs[0]) < 1e-5
    for layer, theirs in enumerate(out.attentions):
        assert (trace["pattern", layer] - theirs[0]).abs().max() < 1e-4


@pytest.mark.slow
def test_smollm2_knows_paris(smollm):
    trace = smollm.run("The capital of France is")
    top3 = [smollm.tokenizer.decode([i]) for i in trace.logits[-1].topk(3).indices]
    assert " Paris" in top3


@pytest.mark.parametrize("fixture", ["smollm", "minilm"])
def test_fused_attention_matches_the_explicit_reference(fixture, request):
    """The forward pass uses scaled_dot_product_attention; the explicit softmax path is the reference."""
    model = request.getfixturevalue(fixture)
    text = "a fluffy blue creature roamed the verdant forest. The capital of France is"
    for causal in (True, False):
        fused, explicit = model.run(text, causal=causal), model.run(text, causal=causal, attention="explicit")
        for layer in range(model.config.n_layers):
            for name in ("z", "attn_out", "resid_post"):
                ours, ref = fused[name, layer], explicit[name, layer]
                assert (ours - ref).abs().max() <= 1e-5 * max(float(ref.abs().max()), 1.0), (causal, name, layer)
            assert torch.equal(fused["pattern", layer], explicit["pattern", layer]) or layer > 0
        if model.config.has_lm_head:
            assert torch.equal(fused.logits.argmax(-1), explicit.logits.argmax(-1))
