"""engine.corpus: per-head statistics over many texts equal a loop over single runs, batched equals one text at a
time, one head's queries and keys equal the trace's, AttentionViz's normalisation leaves the patterns as they are,
and a bad upload raises a clear InputError."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import engine
from engine import corpus
from engine.analysis.head_stats import head_summary
from engine.analysis.roles import ROLES, role_scores
from engine.corpus.run import batches
from engine.errors import InputError, RunCancelled
from tests.corpus_models import save_tiny

TEXTS = ("The cat sat on the mat, and the cat slept.",
         "Anna met Tom at the market, and later Anna thanked Tom.",
         "Rain.",
         "One two three one two three one two three",
         "The quick brown fox jumps over the lazy dog.",
         "A B C D A B C D",
         "x",
         "Water boils at one hundred degrees at sea level, and water freezes at zero.")


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> engine.Model:
    return engine.load(str(save_tiny("llama", tmp_path_factory.mktemp("llama"))), device="cpu")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> engine.Model:
    return engine.load(str(save_tiny("bert", tmp_path_factory.mktemp("bert"))), device="cpu")


def single_run_numbers(model: engine.Model, ids: list[int]) -> dict[str, np.ndarray]:
    """Every statistic of one text from its own trace: head_summary and role_scores, and the mean attention
    distance written out from the whole pattern."""
    trace = model.run_ids(ids)
    out = dict(head_summary(trace))
    roles = role_scores(trace)
    out.update({role: roles[role] for role in ROLES})
    n = len(ids)
    distance = (torch.arange(n)[:, None] - torch.arange(n)[None, :]).abs().float()
    out["distance"] = np.stack([(trace["pattern", layer] * distance).sum(-1).mean(-1).numpy()
                                for layer in range(model.config.n_layers)])
    return out


@pytest.mark.parametrize("which", ["tiny_llama", "tiny_bert"])
def test_statistics_equal_a_loop_over_single_runs(which, request):
    model = request.getfixturevalue(which)
    texts = corpus.Corpus(TEXTS)
    stats = corpus.corpus_stats(model, texts, max_tokens=12)  # the longer texts are cut
    assert stats.truncated.any() and not stats.truncated.all()
    for i, text in enumerate(TEXTS):
        ids, _, _ = model.tokenize(text, 12)
        assert stats.n_tokens[i] == len(ids)
        expected = single_run_numbers(model, ids)
        for name in corpus.NAMES:
            got = stats.per_text[name][i]
            assert np.isnan(got).all() == np.isnan(expected[name]).all(), (i, name)
            np.testing.assert_allclose(got, expected[name], atol=2e-5, rtol=1e-5, err_msg=f"text {i}, {name}")
    # texts without a repeat leave duplicate and induction undefined; over the corpus those are means over the rest
    defined = ~np.isnan(stats.per_text["induction"][:, 0, 0])
    assert 0 < defined.sum() < len(TEXTS) and stats.n_defined("induction") == defined.sum()
    np.testing.assert_allclose(stats.mean("induction"), stats.per_text["induction"][defined].astype(np.float64).mean(0),
                               rtol=1e-6)
    np.testing.assert_allclose(stats.spread("entropy"), stats.per_text["entropy"].astype(np.float64).std(0), rtol=1e-6)
    assert not stats.per_text["entropy"].flags.writeable


def test_smollm2_statistics_equal_single_runs(smollm):
    texts = corpus.sample_corpus().texts[55:62]  # written sentences with repeats and generated ones
    stats = corpus.corpus_stats(smollm, corpus.Corpus(texts), max_tokens=32)
    for i, text in enumerate(texts):
        ids, _, _ = smollm.tokenize(text, 32)
        expected = single_run_numbers(smollm, ids)
        for name in corpus.NAMES:
            np.testing.assert_allclose(stats.per_text[name][i], expected[name], atol=5e-5, err_msg=f"{i} {name}")


@pytest.mark.parametrize("case", ["gemma2", "gemma3_text", "gpt_neo", "gpt_neox", "olmo2"])
def test_family_statistics_equal_single_runs(case, tmp_path):
    """Families with windows shorter than the texts, soft-caps, their own attention scale, per-layer rotary bases,
    partial rotary, parallel blocks and q/k norms: the batched corpus pass equals each text's own trace."""
    from tests.families import build

    build(case, tmp_path)
    model = engine.load(str(tmp_path), device="cpu")
    stats = corpus.corpus_stats(model, corpus.Corpus(TEXTS), max_tokens=12)
    for i, text in enumerate(TEXTS):
        ids, _, _ = model.tokenize(text, 12)
        expected = single_run_numbers(model, ids)
        for name in corpus.NAMES:
            np.testing.assert_allclose(stats.per_text[name][i], expected[name], atol=2e-5, rtol=1e-5,
                                       err_msg=f"{case}: text {i}, {name}")


@pytest.mark.parametrize("which", ["tiny_llama", "tiny_bert"])
def test_batched_equals_one_text_at_a_time(which, request):
    model = request.getfixturevalue(which)
    texts = corpus.Corpus(TEXTS * 3)
    batched = corpus.corpus_stats(model, texts, max_tokens=16)
    single = corpus.corpus_stats(model, texts, max_tokens=16, max_batch=1)
    for name in corpus.NAMES:
        np.testing.assert_allclose(batched.per_text[name], single.per_text[name], atol=2e-5, err_msg=name)
    a = corpus.corpus_qk(model, texts, 2, 1, max_tokens=16)
    b = corpus.corpus_qk(model, texts, 2, 1, max_tokens=16, max_batch=1)
    np.testing.assert_allclose(a.q, b.q, atol=2e-5)
    np.testing.assert_allclose(a.k, b.k, atol=2e-5)


def test_batches_group_similar_lengths():
    lengths = [5, 3, 5, 9, 3, 5, 1]
    causal = batches(lengths, True, max_batch=3)
    assert sorted(i for b in causal for i in b) == list(range(7))
    assert [[lengths[i] for i in b] for b in causal] == [[1, 3, 3], [5, 5, 5], [9]]
    assert all(len({lengths[i] for i in b}) == 1 for b in batches(lengths, False, max_batch=64))
    assert all(len(b) * max(lengths[i] for i in b) <= 10 for b in batches(lengths, True, max_batch_tokens=10))


def test_queries_and_keys_of_a_head(tiny_llama):
    texts = corpus.Corpus(TEXTS)
    layer, head = 1, 5  # key/value head 5 // 4 = 1
    joint = corpus.corpus_qk(tiny_llama, texts, layer, head, max_tokens=16)
    for i, text in enumerate(TEXTS):
        trace = tiny_llama.run(text, max_tokens=16)
        rows = joint.text == i
        np.testing.assert_array_equal(joint.position[rows], np.arange(trace.n_tokens))
        np.testing.assert_array_equal(joint.token_id[rows], trace.token_ids)
        np.testing.assert_allclose(joint.q[rows], trace["q", layer][head].numpy(), atol=1e-5)
        np.testing.assert_allclose(joint.k[rows], trace["k", layer][head].numpy(), atol=1e-5)
    with pytest.raises(InputError, match="does not exist"):
        corpus.corpus_qk(tiny_llama, texts, 3, 0)


def test_normalisation_keeps_every_pattern(tiny_llama):
    texts = corpus.Corpus(TEXTS)
    joint = corpus.corpus_qk(tiny_llama, texts, 2, 3, max_tokens=16)
    norm = corpus.normalise(joint.q, joint.k)
    q, k = joint.q.astype(np.float64), joint.k.astype(np.float64)
    # the centroids coincide; scaled (before the translation) the mean norms match
    np.testing.assert_allclose(norm.q.mean(0), norm.k.mean(0), atol=1e-9)
    c = norm.scale
    assert math.isclose(np.linalg.norm(q * c, axis=1).mean(), np.linalg.norm(k / c, axis=1).mean(), rel_tol=1e-9)
    np.testing.assert_allclose(norm.q, q * c, rtol=1e-12)
    # scaling alone leaves every q·k as it is
    np.testing.assert_allclose((q * c) @ (k / c).T, q @ k.T, rtol=1e-10, atol=1e-10)
    d_head = q.shape[1]
    for i in range(len(TEXTS)):
        rows = joint.text == i
        before = q[rows] @ k[rows].T  # [n, n], query rows
        after = norm.q[rows] @ norm.k[rows].T
        # the translation adds c q·t to every score of a query: the same for all its keys
        np.testing.assert_allclose(after - before, np.repeat(c * q[rows] @ norm.translation[:, None], rows.sum(), 1),
                                   atol=1e-9)
        n = int(rows.sum())
        masked = np.triu(np.ones((n, n), dtype=bool), 1)
        pattern = torch.softmax(torch.tensor(np.where(masked, -np.inf, after) / math.sqrt(d_head)), -1)
        trace = tiny_llama.run(TEXTS[i], max_tokens=16)
        np.testing.assert_allclose(pattern.numpy(), trace["pattern", 2][3].numpy(), atol=1e-5)


def test_projection():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(200, 8)) * np.array([5, 2, 1, 1, 1, 1, 1, 1])
    xy, rows, ratio = corpus.project(points, "pca")
    assert xy.shape == (200, 2) and (rows == np.arange(200)).all()
    centred = points - points.mean(0)
    eig = np.sort(np.linalg.eigvalsh(centred.T @ centred))[::-1]
    np.testing.assert_allclose(ratio, eig[:2] / eig.sum(), rtol=1e-9)
    np.testing.assert_allclose(xy.var(0) * 200, eig[:2], rtol=1e-9)  # the variance along each axis
    xy, rows, _ = corpus.project(points, "tsne", max_points=150)
    assert xy.shape == (150, 2) and len(set(rows)) == 150 and np.isfinite(xy).all()
    with pytest.raises(InputError):
        corpus.project(points, "nope")


def test_progress_and_cancel(tiny_llama):
    texts = corpus.Corpus(TEXTS * 4)
    seen = []
    corpus.corpus_stats(tiny_llama, texts, max_tokens=16, max_batch=8, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (32, 32) and len(seen) == 4 and [d for d, _ in seen] == sorted(d for d, _ in seen)
    asked = []
    with pytest.raises(RunCancelled, match="after 8 of 32"):
        corpus.corpus_stats(tiny_llama, texts, max_tokens=16, max_batch=8,
                            cancel=lambda: asked.append(1) or len(asked) > 1)


def test_parse_good_files():
    lim = corpus.Limits(max_texts=3)
    c, left = corpus.parse(b"first line\n\n  second  \nthird\nfourth\n", "a.txt", lim)
    assert c.texts == ("first line", "second", "third") and left == 1 and c.name == "a.txt"
    jl = "\n".join(json.dumps(x) for x in ({"text": "a <img src=x onerror=alert(1)>"}, "plain", {"prompt": "p"}))
    assert corpus.parse(jl.encode(), "x.jsonl")[0].texts == ("a <img src=x onerror=alert(1)>", "plain", "p")
    csv_data = b'id,Sentence\n1,"Hello, world"\n2,Bye\n'
    assert corpus.parse(csv_data, "x.csv")[0].texts == ("Hello, world", "Bye")
    assert corpus.parse("\ufeffbom first\n".encode(), "b.txt")[0].texts == ("bom first",)
    same = corpus.Corpus(("a", "b"), "other")
    assert corpus.Corpus(("a", "b")).digest == same.digest != corpus.Corpus(("ab",)).digest


@pytest.mark.parametrize("data,name,message", [
    (b"", "e.txt", "empty"),
    (b"  \n\n \t\n", "e.txt", "empty"),
    (bytes(range(256)) * 4, "b.txt", "binary"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "p.txt", "binary"),
    ("caf\xe9 cr\xe8me\n".encode("latin-1"), "l.txt", "not UTF-8"),
    (b"x" * (10 << 20) + b"\n", "big.txt", "over this server's limit"),
    (b"x" * 5_000 + b"\nshort\n", "long.txt", "text 1 has 5,000 characters"),
    (b"a\x07b\n", "c.txt", "control characters"),
    (b'{"title": "x"}\n', "n.jsonl", "no text"),
    (b"{not json\n", "n.jsonl", "not JSON"),
    (b"id,title\n1,x\n", "n.csv", "column named"),
    (b"text\n", "h.csv", "no text"),
    (b"hello", "x.pdf", "not a .txt"),
])
def test_bad_uploads_raise_a_clear_message(data, name, message):
    with pytest.raises(InputError, match=message):
        corpus.parse(data, name)


def test_sample_corpus():
    a, b = corpus.sample_corpus(), corpus.sample_corpus()
    assert len(a) == 300 == len(set(a.texts)) and a == b and a.digest == b.digest
    assert all(0 < len(t) < 200 for t in a.texts)
    assert sum(t.count("Anna") >= 2 or t.count("Tom") >= 2 for t in a.texts) > 5  # repeats: induction is defined
