"""Streamlit pieces several views use: a chart with the app's camera button, and selections that survive a
change of text (a stale choice falls back to a default instead of raising)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import plotly.graph_objects as go
import streamlit as st

import engine
from components.figures.layout import export_config
from components.labels import token_text


def chart(fig: go.Figure, key: str, fmt: str = "png", **kwargs: Any):
    """st.plotly_chart full width; the camera button saves `attention-explorer-<key>.<fmt>` at a publication
    size. kwargs pass on (e.g. on_select for the head grid)."""
    config = export_config(fmt, f"attention-explorer-{key}", fig.layout.height)
    return st.plotly_chart(fig, width="stretch", key=key, config=config, **kwargs)


def keep_valid(key: str, valid: Callable[[Any], bool], default: Any) -> bool:
    """Reset a widget's stale value (from a shorter text, another model) to `default`; True when the widget
    already holds a value (then it must be drawn without a default of its own)."""
    s = st.session_state
    if key in s and not valid(s[key]):
        s[key] = default
    return key in s


def select(label: str, options: Sequence[Any], key: str, default: Any, **kwargs: Any) -> Any:
    """st.selectbox that starts at `default` and falls back to it when its value is no longer an option."""
    has = keep_valid(key, list(options).__contains__, default)
    index = {} if has else {"index": list(options).index(default)}
    return st.selectbox(label, options, key=key, **index, **kwargs)


def token_select(label: str, tokens: Sequence[str], key: str, default: int | None = None) -> int:
    """A selectbox of token positions ('3: ␣mole'); by default the last token."""
    n = len(tokens)
    default = n - 1 if default is None else min(max(default, 0), n - 1)
    return int(select(label, list(range(n)), key, default, format_func=lambda i: f"{i}: {token_text(tokens[i])}"))


def last_word_token(model: engine.Model, trace: engine.Trace) -> int:
    """The last position that is not a special token ([SEP] in BERT), the natural default to inspect."""
    plain = [i for i, t in enumerate(trace.token_ids) if t not in model.special_ids]
    return plain[-1] if plain else trace.n_tokens - 1


def token_multiselect(label: str, tokens: Sequence[str], key: str, default: list[int]) -> list[int]:
    """A multiselect of token positions; positions a shorter text no longer has are dropped from the choice."""
    n = len(tokens)
    kept = [t for t in st.session_state.get(key, []) if t < n]
    has = keep_valid(key, lambda chosen: len(chosen) == len(kept), kept)
    return st.multiselect(label, list(range(n)), default=None if has else default, key=key,
                          format_func=lambda i: f"{i}: {token_text(tokens[i])}")


def table(data: Any, key: str, **kwargs: Any) -> None:
    """st.dataframe inside a container keyed `key`: a display-only table keeps no key of its own that AppTest
    could find it by."""
    with st.container(key=key):
        st.dataframe(data, **kwargs)


def on_request(size: int, auto_up_to: int, key: str, what: str) -> bool:
    """Whether to compute something whose cost grows fast with `size` (tokens): always up to `auto_up_to`, beyond
    that only once the visitor turns on the toggle under `key` (it stays on)."""
    if size <= auto_up_to:
        return True
    return st.toggle(f"Compute {what} for {size:,} tokens (beyond {auto_up_to:,} this takes seconds to minutes, so "
                     "it waits for you to ask)", key=key)
