"""Helpers for driving app.py with Streamlit's AppTest: start a session from a URL, read its figures."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
from streamlit.testing.v1 import AppTest

from components import state
from components.views.registry import SCHEMA, label

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def new_app(**query) -> AppTest:
    """An AppTest of app.py whose URL carries `query` (not yet run)."""
    at = AppTest.from_file(APP, default_timeout=300)
    for name, value in query.items():
        at.query_params[name] = str(value)
    return at


def start(**query) -> AppTest:
    return new_app(**query).run()


def ok(at: AppTest) -> AppTest:
    """The page ran with no exception and no error message; returns it for chaining."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def app_state(at: AppTest) -> state.AppState:
    """The app state the session holds, read from its keys as the app reads it."""
    return state.from_session(at.session_state, SCHEMA)


def open_tab(at: AppTest, view_id: str) -> AppTest:
    """Click a tab (st.tabs holds its label) and rerun."""
    at.session_state[state.KEYS["tab"]] = label(view_id)
    return at.run()


def table(at: AppTest, key: str) -> pd.DataFrame:
    """The numbers behind the table shown under `key`."""
    return at.get_by_key(key).dataframe[0].value


def charts(at: AppTest) -> dict[str, dict]:
    """Plotly figures on the page by their widget key."""
    return {el.proto.id.rsplit("-", 1)[-1]: json.loads(el.proto.spec) for el in at.get("plotly_chart")}


def chart_configs(at: AppTest) -> dict[str, dict]:
    """The Plotly config (camera button options) of each figure on the page, by widget key."""
    return {el.proto.id.rsplit("-", 1)[-1]: json.loads(el.proto.config) for el in at.get("plotly_chart")}


def decode(value) -> np.ndarray:
    """Plotly's JSON holds numpy arrays as typed arrays: {"dtype", "bdata" (base64), "shape"}."""
    if isinstance(value, dict) and "bdata" in value:
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = [int(x) for x in str(value.get("shape", len(flat))).split(",")]
        return flat.reshape(shape).astype(np.float64)
    return np.array(value, dtype=np.float64)


def heatmap(fig: dict) -> np.ndarray:
    """The values of a figure's first heatmap."""
    trace = next(t for t in fig["data"] if t["type"] == "heatmap")
    return decode(trace["z"])


@contextmanager
def sessions_at_once() -> Iterator[None]:
    """Let AppTests run at once, as the sessions of one server do. Each AppTest run sets process-wide state for
    its duration and restores it when it ends, under the runs still going in other threads: the Runtime singleton
    (its own stand-in, then None: "Runtime hasn't been created!") and the config option global.appTest (without
    it, widgets stop recording what AppTest reads back). Inside this block every run sees the first stand-in (one
    runtime, as in a server) and global.appTest stays on. Compiling the script is serialised too: a server compiles
    app.py once in its one script cache, while each AppTest has its own, and CPython 3.11's ast.parse is not safe
    in several threads at once ("AST constructor recursion depth mismatch")."""
    from streamlit import config
    from streamlit.runtime import Runtime
    from streamlit.runtime.scriptrunner.script_cache import ScriptCache
    from streamlit.testing.v1 import app_test

    first: list = []

    def instance(cls):
        if not first and cls._instance is not None:
            first.append(cls._instance)
        if not first:
            raise RuntimeError("Runtime hasn't been created!")
        return first[0]

    saved = Runtime.__dict__["instance"], Runtime.__dict__["exists"], app_test.patch_config_options
    get_bytecode, compiling = ScriptCache.get_bytecode, threading.Lock()

    def compile_one_at_a_time(cache, script_path):
        with compiling:
            return get_bytecode(cache, script_path)

    ScriptCache.get_bytecode = compile_one_at_a_time
    app_test_option = config.get_option("global.appTest")
    Runtime.instance = classmethod(instance)
    Runtime.exists = classmethod(lambda cls: bool(first) or cls._instance is not None)
    app_test.patch_config_options = lambda options: nullcontext()
    config.set_option("global.appTest", True)
    try:
        yield
    finally:
        Runtime.instance, Runtime.exists, app_test.patch_config_options = saved
        ScriptCache.get_bytecode = get_bytecode
        config.set_option("global.appTest", app_test_option)
