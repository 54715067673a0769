"""Preset sentences from the explanation, with context written before the word a causal model must read."""

from __future__ import annotations

import streamlit as st

SENTENCES: list[tuple[str, str]] = [
    ("Fluffy blue creature", "a fluffy blue creature roamed the verdant forest"),
    ("Eiffel tower", "Near the Eiffel tower in Paris, the tourist bought a small model of the tower"),
    ("mole: animal", "In the garden, the small furry animal dug a tunnel: it was a mole"),
    ("mole: chemistry", "In chemistry, the amount of a substance is measured in units called the mole"),
    ("mole: skin mark", "The dermatologist examined the dark spot on his skin: it was a mole"),
    ("Capital of France", "The capital of France is"),
]


def apply_preset() -> None:
    """on_change of the preset selectbox: put the chosen sentence into the text area."""
    chosen = st.session_state.get("preset")
    for label, sentence in SENTENCES:
        if label == chosen:
            st.session_state.text = sentence
