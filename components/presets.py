"""Preset sentences from the explanation, with context written before the word a causal model must read."""

from __future__ import annotations

import streamlit as st

from .content import SENTENCES as _BY_ID

SENTENCES: list[tuple[str, str]] = list(_BY_ID.values())


def apply_preset() -> None:
    """on_change of the preset selectbox: put the chosen sentence into the text area."""
    chosen = st.session_state.get("preset")
    for label, sentence in SENTENCES:
        if label == chosen:
            st.session_state.text = sentence
