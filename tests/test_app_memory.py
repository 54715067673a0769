"""An open page keeps no run alive outside the server's run cache, so the memory budget (ATTN_EXPLORER_MEMORY_MB)
counts every run the server holds. The pattern view's CSV download is built when clicked (Streamlit keeps the
callable for as long as the page is open): it reaches its run weakly and asks the run cache again if the run was
evicted meanwhile."""

from __future__ import annotations

import csv
import gc
import io
import threading

import numpy as np
import pytest
import streamlit as st
import torch
from apptest_tools import new_app
from streamlit.runtime.media_file_manager import MediaFileManager

import engine
from components import runs, settings

pytestmark = pytest.mark.slow
TEXT = "The mole dug a tunnel under the garden, and the gardener was furious about it. " * 16  # > 128 tokens


def traces_alive(n_tokens: int) -> int:
    gc.collect()
    return sum(type(o) is engine.Trace and o.n_tokens == n_tokens for o in gc.get_objects())


@pytest.fixture
def media_files(monkeypatch) -> list[MediaFileManager]:
    """The media file managers of the AppTest runs, kept alive as a real server keeps its one manager (AppTest
    drops its own after each run): they hold the download callables of the page."""
    kept: list[MediaFileManager] = []
    init = MediaFileManager.__init__

    def keep(self, *args, **kwargs):
        init(self, *args, **kwargs)
        kept.append(self)

    monkeypatch.setattr(MediaFileManager, "__init__", keep)
    return kept


def downloads(managers: list[MediaFileManager]) -> dict[str, tuple[MediaFileManager, str]]:
    """file name -> (manager, deferred file id) of every download callable the page registered."""
    return {entry["filename"]: (m, file_id) for m in managers for file_id, entry in m._deferred_callables.items()}


def download(manager: MediaFileManager, file_id: str) -> str:
    """Click a download: Streamlit runs its callable in a worker thread and serves the file it returns."""
    urls = []
    worker = threading.Thread(target=lambda: urls.append(manager.execute_deferred(file_id)))
    worker.start()
    worker.join(300)
    return manager._storage.get_file(urls[0].rsplit("/", 1)[1]).content.decode()


def test_an_open_page_keeps_no_run_once_the_server_lets_it_go(media_files):
    at = new_app(text=TEXT, off="2.1", layer=3, head=2)  # the switched run, and the unmodified one beside it
    at.run()
    assert not at.exception and not at.error, (at.exception, at.error)
    model = engine.load("smollm2-135m")
    n = len(model.tokenize(TEXT)[0])
    assert n > 128 and traces_alive(n) == 2
    files = downloads(media_files)
    assert {"pattern_layer3_head2.csv", f"pattern_layer3_head2_tokens{n - 64}-{n - 1}.csv"} <= set(files)
    st.cache_resource.clear()  # the server lets every run go (as it evicts runs under the memory budget)
    assert traces_alive(n) == 0  # nothing the open page drew, its download callables included, holds a run
    rows = list(csv.reader(io.StringIO(download(*files["pattern_layer3_head2.csv"]))))  # the run is computed again
    expected = model.run(TEXT, head_mask=model.head_mask_without({(2, 1)}))["pattern", 3, 2].numpy()  # [n, n]
    got = np.array([[float(v) for v in row[1:]] for row in rows[1:]])
    assert got.shape == (n, n) and np.allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_a_run_asked_for_later_is_the_kept_one_or_the_same_run_again():
    config = settings.load()
    model = engine.load("smollm2-135m")
    heads_off = frozenset({(2, 1)})
    trace = runs.get_trace(model, TEXT, None, heads_off, config)
    again = runs.later("smollm2-135m", model, trace, TEXT, None, heads_off, config)
    assert again() is trace  # while the server keeps it
    expected, uid = trace["pattern", 3].clone(), trace.uid
    del trace
    st.cache_resource.clear()
    got = []
    worker = threading.Thread(target=lambda: got.append(again()))  # as Streamlit calls a download: another thread
    worker.start()
    worker.join(300)
    assert got and got[0].uid != uid  # computed again through the run cache
    assert torch.equal(got[0]["pattern", 3], expected)
    assert not got[0].head_mask[2, 1] and got[0].head_mask.sum() == model.config.n_layers * model.config.n_heads - 1
