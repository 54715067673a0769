"""One cache of what views derive from runs (head thumbnails and statistics, figures, predictions, word-sense
analyses), shared by every session of the server process.

`per_trace(compute, *args)` returns compute(*args), computed once per distinct call: an entry is keyed by the
function and its arguments, where a Trace counts by its unique id and a Model by its name and source, so an
entry can never be served for another run. Other arguments must be hashable values (ints, strings, tuples).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

import engine

T = TypeVar("T")
MAX_ENTRIES = 96  # entries are small (figures of at most a few MB, thumbnails, tables)


@st.cache_resource(max_entries=MAX_ENTRIES, show_spinner=False)
def _entry(key: tuple, _compute: Callable[[], Any]) -> Any:
    return _compute()


def _identity(arg: Any) -> Any:
    if isinstance(arg, engine.Trace):
        return ("trace", arg.uid)
    if isinstance(arg, engine.Model):
        return ("model", arg.config.name, arg.source)
    if isinstance(arg, tuple):
        return tuple(_identity(a) for a in arg)
    return arg


def per_trace(compute: Callable[..., T], *args: Any) -> T:
    """compute(*args), cached for the traces (and other arguments) given."""
    key = (compute.__module__, compute.__qualname__, *(_identity(a) for a in args))
    return _entry(key, lambda: compute(*args))
