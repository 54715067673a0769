"""Property tests (Hypothesis) on the engine with the embedded models.

Any Unicode text runs, except a text of only whitespace, which the engine refuses with its own InputError (and
lone surrogates, which UTF-8 cannot carry); every pattern is finite, non-negative, a distribution over keys, and
exactly 0 where the mask hides a key; token labels show every token literally.
"""

from __future__ import annotations

import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from components.labels import markdown_literal, token_labels, token_text

pytestmark = pytest.mark.slow
PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# What a browser can send: every code point except lone surrogates (UTF-8 cannot carry them), with extra weight
# on what breaks naive code: NUL, controls, zero-width and bidi characters, combining marks, emoji, markup.
TRICKY = ["\x00", "\x07", "\x1b", "\x7f", "\t", "\n", "\r", " ", "\u00a0", "\u200b", "\u200c", "\u200d", "\u2060",
          "\ufeff", "\u202e", "\u2028", "\u0301", "\u0338", "👩‍🔬", "🇫🇷", "😀", "我", "ع", "ש", "<", ">", "&", "$",
          "*", "_", "`", "[", "]", "(", ")", ":", "\\", "%", "{", "}", "~", "#", "|", "a", "Z", "0"]
texts = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=40),
    st.lists(st.sampled_from(TRICKY), max_size=30).map("".join),
    st.lists(st.sampled_from(TRICKY) | st.text(st.characters(codec="utf-8"), max_size=4), max_size=12).map("".join),
)
causal_choices = st.sampled_from([None, True, False])


def heads_off(cfg: engine.ModelConfig):
    """Sets of (layer, head) to switch off: none, a few, or every head."""
    pairs = st.tuples(st.integers(0, cfg.n_layers - 1), st.integers(0, cfg.n_heads - 1))
    every = frozenset((la, h) for la in range(cfg.n_layers) for h in range(cfg.n_heads))
    return st.one_of(st.just(frozenset()), st.frozensets(pairs, max_size=12), st.just(every))


def run_or_refuse_blank(model: engine.Model, text: str, **kwargs) -> engine.Trace | None:
    """Run `text`. The only text the engine may refuse is one with nothing but whitespace (str.strip() empty),
    with its own message; any other text must run, and an EngineError for it fails the test."""
    if text.strip():
        return model.run(text, **kwargs)
    with pytest.raises(engine.InputError, match=r"^the text is empty: type a sentence to see its attention\.$"):
        model.run(text, **kwargs)
    return None


def check_trace(trace: engine.Trace, text: str, causal: bool | None, off: frozenset) -> None:
    cfg = trace.config
    n = trace.n_tokens
    assert n >= 1 and len(trace.tokens) == len(trace.token_ids) == n
    assert trace.causal == (cfg.causal if causal is None else causal)
    hidden = torch.ones(n, n, dtype=torch.bool).triu(1) if trace.causal else torch.zeros(n, n, dtype=torch.bool)
    for layer in range(cfg.n_layers):
        p = trace["pattern", layer]  # [n_heads, n, n]
        assert p.shape == (cfg.n_heads, n, n)
        assert torch.isfinite(p).all() and (p >= 0).all()
        assert torch.allclose(p.sum(-1), torch.ones(cfg.n_heads, n), atol=1e-5)
        assert (p[:, hidden] == 0).all()
    for layer, head in off:
        assert not trace.head_mask[layer, head]
    if trace.logits is not None:
        assert trace.logits.shape == (n, cfg.d_vocab) and torch.isfinite(trace.logits).all()
    assert torch.isfinite(trace.resid_final).all()
    # every token label is literal: Plotly labels hold no markup, Markdown labels no unescaped punctuation
    for label in token_labels(trace.tokens):
        assert not re.search(r"[<>$]", label), label
    for token in trace.tokens:
        shown = token_text(token)
        assert shown and not any(ch in shown for ch in "\x00\x1b\u202e\u200b")
        assert not re.search(r"[!-/:-@\[-`{-~]", re.sub(r"\\.|&nbsp;", "", markdown_literal(shown))), shown


def run_with_heads_off(model, text, causal, data):
    """Run with a drawn set of heads switched off: (trace, or None for a blank text the engine refused; heads off)."""
    off = data.draw(heads_off(model.config))
    mask = model.default_head_mask()
    for layer, head in off:
        mask[layer, head] = False
    return run_or_refuse_blank(model, text, causal=causal, head_mask=mask, max_tokens=64), off


@PROPERTY
@given(text=texts, causal=causal_choices, data=st.data())
def test_smollm_runs_any_text_but_a_blank_one(smollm, text, causal, data):
    trace, off = run_with_heads_off(smollm, text, causal, data)
    if trace is not None:
        check_trace(trace, text, causal, off)


@PROPERTY
@given(text=texts, causal=causal_choices, data=st.data())
def test_minilm_runs_any_text_but_a_blank_one(minilm, text, causal, data):
    trace, off = run_with_heads_off(minilm, text, causal, data)
    if trace is not None:
        check_trace(trace, text, causal, off)
        assert trace.tokens[0] == "[CLS]" and trace.tokens[-1] == "[SEP]"


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(words=st.lists(st.sampled_from(["mole", " tunnel", " 东京", " 👩‍🔬", " <b>", " $x$", "\x00", " é"]),
                      min_size=1, max_size=30).map("".join),
       limit=st.integers(1, 16))
def test_max_tokens_bounds_every_run(smollm, minilm, words, limit):
    for model, least in ((smollm, 1), (minilm, 3)):  # MiniLM needs room for [CLS], a word and [SEP]
        limit = max(limit, least)
        trace = model.run(words, max_tokens=limit)
        assert trace.n_tokens <= limit
        assert trace.n_tokens_in_text >= trace.n_tokens
        assert trace.truncated == (trace.n_tokens_in_text > trace.n_tokens)


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb"])
def test_lone_surrogates_raise_the_engine_error(smollm, text):
    with pytest.raises(engine.InputError, match=r"invalid Unicode \(a lone surrogate at position \d+\)"):
        smollm.run(text)
