"""The Corpus tab through the real app.py with AppTest: the maps, the head clusters and the joint query–key map
against the engine's numbers computed here, the link, opening a text in the other tabs, an upload, and bad
uploads that change nothing."""

from __future__ import annotations

import numpy as np
import pytest
from apptest_tools import app_state, charts, decode, heatmap, ok, start

from components.labels import markdown_literal
from engine import corpus
from engine.corpus.clusters import FEATURES, cluster_heads

pytestmark = pytest.mark.slow
N_TEXTS, MAX_TOKENS = 12, 16
LITERAL = "<img src=x onerror=alert(1)> **bold** :red[red]"


@pytest.fixture(autouse=True)
def small_corpus(monkeypatch):
    monkeypatch.setenv("ATTN_EXPLORER_CORPUS_MAX_TEXTS", str(N_TEXTS))
    monkeypatch.setenv("ATTN_EXPLORER_CORPUS_MAX_TOKENS", str(MAX_TOKENS))


def points(fig: dict, name: str) -> np.ndarray:
    trace = next(t for t in fig["data"] if t.get("name") == name)
    return np.stack([decode(trace["x"]), decode(trace["y"])], 1)


def test_statistics_clusters_and_joint_map_equal_the_engine(smollm):
    texts = corpus.sample_corpus(N_TEXTS)
    want = corpus.corpus_stats(smollm, texts, MAX_TOKENS)
    at = ok(start(tab="corpus", layer=18, head=6))
    assert "corpus_map" not in charts(at)  # nothing runs before it is asked for
    at.button(key="corpus_go_stats").click()
    ok(at.run())
    np.testing.assert_allclose(heatmap(charts(at)["corpus_map"]), want.mean("previous"), atol=1e-5)
    at.selectbox(key="corpus_stat").set_value("induction")
    at.radio(key="corpus_reduce").set_value("spread")
    ok(at.run())
    np.testing.assert_allclose(heatmap(charts(at)["corpus_map"]), want.spread("induction"), atol=1e-5)
    assert at.query_params["corpus.stat"] == "induction" and at.query_params["corpus.reduce"] == "spread"

    # head clusters: every head where the engine places it, its cluster number as its label
    groups = cluster_heads({f: want.mean(f) for f in FEATURES}, 6)
    fig = charts(at)["corpus_clusters"]
    n_heads = smollm.config.n_heads
    seen = 0
    for trace in fig["data"]:
        if "customdata" not in trace:
            continue
        heads = decode(trace["customdata"]).astype(int)
        rows = heads[:, 0] * n_heads + heads[:, 1]
        np.testing.assert_allclose(np.stack([decode(trace["x"]), decode(trace["y"])], 1), groups.xy[rows],
                                   atol=1e-4)
        assert trace["text"] == [str(c) for c in groups.cluster[rows]]
        seen += len(rows)
    assert seen == smollm.config.n_layers * n_heads
    table = at.get_by_key("corpus_cluster_table").dataframe[0].value
    assert table["heads"].sum() == seen

    # the joint map of the focused head: normalised, then PCA, computed here from the engine's queries and keys
    at.button(key="corpus_go_joint").click()
    ok(at.run())
    joint = corpus.corpus_qk(smollm, texts, 18, 6, MAX_TOKENS)
    norm = corpus.normalise(joint.q, joint.k)
    xy, _, ratio = corpus.project(np.concatenate([norm.q, norm.k]), "pca")
    fig = charts(at)["corpus_joint"]
    n = len(joint.q)
    np.testing.assert_allclose(points(fig, "queries"), xy[:n], atol=1e-3)
    np.testing.assert_allclose(points(fig, "keys"), xy[n:], atol=1e-3)
    assert fig["layout"]["xaxis"]["title"]["text"] == f"PC 1 ({ratio[0]:.0%})"
    assert any(markdown_literal(f"scale c = {norm.scale:.3f}") in c.value for c in at.caption)

    # a text of the corpus opened in the other tabs
    at.selectbox(key="corpus_text").set_value(3)
    at.button(key="corpus_open").click()
    ok(at.run())
    assert app_state(at).text == texts.texts[3]

    # the link brings the same view back, the results cached
    again = ok(start(**{k: at.query_params[k] for k in at.query_params}))
    np.testing.assert_allclose(heatmap(charts(again)["corpus_map"]), want.spread("induction"), atol=1e-5)


def test_an_upload_and_bad_uploads(smollm):
    at = ok(start(tab="corpus"))
    at.radio(key="corpus_source").set_value("upload")
    ok(at.run())
    good = f"The cat sat on the mat.\n{LITERAL}\nAnna met Tom, and Anna thanked Tom.\n".encode()
    at.get("file_uploader")[0].upload("good.txt", good, "text/plain")
    ok(at.run())
    assert any("Read 3 texts" in i.value for i in at.info)
    at.button(key="corpus_go_stats").click()
    ok(at.run())
    texts = corpus.Corpus(("The cat sat on the mat.", LITERAL, "Anna met Tom, and Anna thanked Tom."))
    want = corpus.corpus_stats(smollm, texts, MAX_TOKENS).mean("previous")
    np.testing.assert_allclose(heatmap(charts(at)["corpus_map"]), want, atol=1e-5)
    at.button(key="corpus_go_joint").click()
    ok(at.run())
    hover = [h for t in charts(at)["corpus_joint"]["data"] for h in t["hovertext"]]
    assert any("<img" not in h and "src=x" in h for h in hover)  # escaped for Plotly: shown, never markup

    for name, data, message in (("binary.txt", bytes(range(256)) * 8, "binary"),
                                ("empty.txt", b"", "empty"),
                                ("latin.txt", "caf\xe9\n".encode("latin-1"), "not UTF-8"),
                                ("line.txt", b"x" * (10 << 20), "over this server's limit")):
        uploader = at.get("file_uploader")[0]
        uploader.set_value((name, data, "text/plain"))
        at.run()
        assert not at.exception
        errors = [e.value for e in at.error]
        assert any(markdown_literal(message) in e and "Still using" in e for e in errors), (name, errors)
        assert any(markdown_literal("Your corpus “good.txt”: 3 texts.") in c.value for c in at.caption)
        np.testing.assert_allclose(heatmap(charts(at)["corpus_map"]), want, atol=1e-5)  # the last numbers stay
