"""Fair use of the engine through the real app.py (AppTest): one visitor firing 20 edits in a row runs at most one
at a time and sees the rate message past the cap, while another visitor's requests are served normally.

Twenty edits in a row from one visitor are twenty script runs with one session id, most of them at once (as
overlapping reruns of one session do); a spy on engine.Model.run counts the runs each visitor has computing.
"""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import streamlit as st
from apptest_tools import charts, heatmap, new_app, sessions_at_once
from streamlit.testing.v1 import AppTest

import engine

pytestmark = pytest.mark.slow
CAP = 5
RATE = re.compile(r"Slow down: you started 5 new runs in the last minute, this server's limit; new runs are possible "
                  r"again in \d+ s \(what is already computed still shows at once\)\.")


class RunSpy:
    """Wraps engine.Model.run: per visitor (the text's first two words), runs started and most at once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.running: dict[str, int] = {}
        self.most: dict[str, int] = {}
        self.started: dict[str, int] = {}

    def wrap(self, run):
        def spy(model, text, *args, **kwargs):
            who = " ".join(text.split()[:2])
            with self.lock:
                self.running[who] = self.running.get(who, 0) + 1
                self.most[who] = max(self.most.get(who, 0), self.running[who])
                self.started[who] = self.started.get(who, 0) + 1
            try:
                time.sleep(0.2)  # a longer run: overlapping runs would show
                return run(model, text, *args, **kwargs)
            finally:
                with self.lock:
                    self.running[who] -= 1

        return spy


@pytest.fixture
def capped_server(monkeypatch):
    """A fresh server process's shared caches under a cap of 5 new runs per minute and 16-token runs."""
    monkeypatch.setenv("ATTN_EXPLORER_RUNS_PER_MINUTE", str(CAP))
    monkeypatch.setenv("ATTN_EXPLORER_MAX_TOKENS", "16")
    spy = RunSpy()
    monkeypatch.setattr(engine.Model, "run", spy.wrap(engine.Model.run))
    st.cache_resource.clear()  # the trace cache is made with the settings of the process's first page
    with sessions_at_once():
        yield spy
    st.cache_resource.clear()  # later tests get the default caps again


def visit(text: str, session: str | None = None) -> AppTest:
    at = new_app(text=text)
    if session is not None:
        at.session_state["session_id"] = session  # one visitor: every run carries its session id
    return at.run()


def warnings(at: AppTest) -> list[str]:
    """The page's warnings as a visitor reads them (markdown_literal's escapes removed)."""
    return [re.sub(r"\\(.)", r"\1", w.value).replace("\u2060", "").replace("&nbsp;", " ") for w in at.warning]


def shows_pattern(at: AppTest) -> bool:
    return "pattern_fig" in charts(at)


def test_twenty_edits_in_a_row_run_one_at_a_time_and_hit_the_cap(capped_server):
    spy = capped_server
    first = visit("Visitor one, edit 0: the mole dug a tunnel", session="visitor-one")
    assert not first.exception and not first.warning and shows_pattern(first)
    before = heatmap(charts(first)["pattern_fig"])

    edits = [f"Visitor one, edit {i}: the mole dug a tunnel" for i in range(1, 20)]

    def other_visitor() -> list[list[str]]:  # meanwhile, another visitor edits three times
        at, seen = visit("Visitor two opens the page"), []
        for i in range(4):
            seen.append([e.value for e in [*at.exception, *at.error, *at.warning]] if shows_pattern(at) else
                        ["no pattern", *(e.value for e in [*at.exception, *at.error, *at.warning])])
            if i < 3:
                at.text_area(key="text").set_value(f"Visitor two, edit {i}: the river bank flooded").run()
        return seen

    with ThreadPoolExecutor(max_workers=len(edits) + 1) as pool:
        other = pool.submit(other_visitor)
        storm = list(pool.map(lambda text: visit(text, session="visitor-one"), edits))
        other_pages = other.result()

    for at in storm:
        assert not at.exception and not at.error, [e.value for e in at.exception]
    served = [at for at in storm if shows_pattern(at) and not at.warning]
    refused = [at for at in storm if warnings(at)]
    assert len(served) == CAP - 1 and len(refused) == len(edits) - (CAP - 1)  # edit 0 was the first of the 5
    for at in refused:
        (warning,) = warnings(at)
        assert RATE.fullmatch(warning), warning  # a new visit has no earlier view to keep showing
    assert spy.started["Visitor one,"] == CAP and spy.most["Visitor one,"] == 1  # one run at a time, 5 in all
    assert other_pages == [[]] * 4  # the other visitor: every page drawn, no error, no notice
    assert spy.started["Visitor two"] == 1 and spy.started["Visitor two,"] == 3  # and each of its edits ran

    first.text_area(key="text").set_value("Visitor one, edit 20: the mole dug a tunnel").run()  # the 20th edit
    assert not first.exception and not first.error
    (warning,) = warnings(first)
    assert warning.endswith(" Showing the last view that ran.") and RATE.match(warning), warning
    assert np.array_equal(heatmap(charts(first)["pattern_fig"]), before)  # the previous view stays
    assert first.session_state.text == "Visitor one, edit 20: the mole dug a tunnel"  # the typed text is kept
    assert spy.started["Visitor one,"] == CAP
