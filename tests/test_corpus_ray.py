"""The corpus on a Ray cluster gives the same arrays as in the server's process. The test starts a local cluster
(a head and one worker node, one CPU each, on 127.0.0.2), and stops it after: no Ray process or folder is left."""

from __future__ import annotations

import os

import numpy as np
import pytest

import engine
from engine import corpus
from tests.corpus_models import save_tiny
from tests.ray_cluster import local_cluster

pytestmark = [pytest.mark.ray, pytest.mark.timeout(900)]
ray = pytest.importorskip("ray", reason="`bash scripts/setup.sh --dev` installs Ray")


@pytest.fixture(scope="module")
def cluster():
    from engine.corpus import on_ray

    before = set(os.listdir("/tmp"))
    with local_cluster(workers=1) as address:
        yield address
        on_ray.disconnect()
    assert not any(name.startswith("ray-") for name in set(os.listdir("/tmp")) - before)  # its folder is gone


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return save_tiny("llama", tmp_path_factory.mktemp("llama"))


def test_ray_arrays_equal_in_process_arrays(cluster, tiny_folder):
    model = engine.load(str(tiny_folder), device="cpu")
    texts = corpus.Corpus(tuple(corpus.sample_corpus().texts[:60]))
    seen = []
    local = corpus.corpus_stats(model, texts, max_tokens=24, max_batch=8)
    remote = corpus.corpus_stats(model, texts, max_tokens=24, max_batch=8, ray_address=cluster,
                                 model_name=str(tiny_folder), load_options={"device": "cpu"},
                                 progress=lambda done, total: seen.append(done))
    assert seen[-1] == 60 and len(seen) == 8
    for name in corpus.NAMES:
        np.testing.assert_allclose(remote.per_text[name], local.per_text[name], atol=1e-5, rtol=1e-5, err_msg=name)
    np.testing.assert_array_equal(remote.n_tokens, local.n_tokens)
    a = corpus.corpus_qk(model, texts, 1, 6, max_tokens=24)
    b = corpus.corpus_qk(model, texts, 1, 6, max_tokens=24, ray_address=cluster, model_name=str(tiny_folder),
                         load_options={"device": "cpu"})
    np.testing.assert_allclose(b.q, a.q, atol=1e-5)
    np.testing.assert_allclose(b.k, a.k, atol=1e-5)
    np.testing.assert_array_equal(b.text, a.text)
    assert len(ray.nodes()) == 2 and ray.cluster_resources()["CPU"] == 2


def test_ray_worker_failure_is_a_clear_message(cluster):
    model = engine.load("minilm-l6", device="cpu")
    with pytest.raises(engine.EngineError, match="a Ray worker failed"):
        corpus.corpus_stats(model, corpus.Corpus(("a", "b")), ray_address=cluster, model_name="/no/such/folder")


def test_a_server_job_on_ray_is_cached_and_equal(cluster, tiny_folder):
    from engine.serving import corpus as serving
    from engine.serving.cache import RunCache

    model = engine.load(str(tiny_folder), device="cpu")
    texts = corpus.Corpus(tuple(corpus.sample_corpus().texts[100:130]))
    cache, progress = RunCache(1 << 30), serving.Progress()
    job = serving.Job(max_tokens=24, ray_address=cluster, model_name=str(tiny_folder),
                      load_options=(("device", "cpu"),))
    first = serving.get(cache, progress, model, texts, job, session="visitor")
    again = serving.get(cache, progress, model, texts, job, session="visitor")
    assert again is first and cache.runs_started == 1
    assert progress.get(serving.key_of(model, texts, job, None)).texts == 30
    local = corpus.corpus_stats(model, texts, 24)
    for name in corpus.NAMES:
        np.testing.assert_allclose(first.per_text[name], local.per_text[name], atol=1e-5, err_msg=name)
    assert cache.nbytes == sum(a.nbytes for a in [*first.per_text.values(), first.n_tokens, first.truncated])
