"""The app's run with an activation patch: the state's `Patch` (set by a click in the Compare view, or read from
the link) turned into the engine's `patch=`, and what the page says about it, with the way back."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

import engine
from components import runs, state
from components.labels import markdown_literal, token_text
from components.settings import Settings
from engine.analysis.compare import PatchDict, patch_from


@dataclass(frozen=True)
class Applied:
    """The engine's patch for the app's run (None: no patch, or one that does not fit) and the page's note on it."""

    patch: PatchDict | None = None
    note: str = ""  # what is patched, or why the state's patch was not applied; empty without a patch
    fits: bool = True


def heads_text(heads: tuple[tuple[int, int], ...], n_heads: int) -> str:
    """'all 9 heads of layer 3' or 'head 3.1' / 'heads 3.0, 3.1'."""
    layers = {layer for layer, _ in heads}
    if len(layers) == 1 and len(heads) == n_heads > 1:
        return f"all {n_heads} heads of layer {layers.pop()}"
    return ("head " if len(heads) == 1 else "heads ") + ", ".join(f"{layer}.{head}" for layer, head in heads)


def prepare(model: engine.Model, text: str, s: state.AppState, settings: Settings) -> Applied:
    """The patch of the state for the run of `text` under the state's mask and switches. A's z come from the run
    of the patch's source text under the same mask and switches (through the shared run cache)."""
    p, cfg = s.patch, model.config
    if p is None:
        return Applied()
    missing = [f"{layer}.{head}" for layer, head in p.heads
               if not (0 <= layer < cfg.n_layers and 0 <= head < cfg.n_heads)]
    if missing:
        return Applied(note=f"The patch names head(s) {', '.join(missing)}, which {cfg.name} does not have: the run "
                            "is shown without the patch.", fits=False)
    try:
        ids, _, _ = model.tokenize(text, settings.max_tokens)
        source = runs.get_trace(model, p.source, s.causal, s.heads_off, settings)
    except engine.InputError as err:
        return Applied(note=f"The patch's texts could not be run ({err}): the run is shown without the patch.",
                       fits=False)
    if p.source_at >= source.n_tokens or p.at >= len(ids):
        return Applied(note=f"The patch carries token {p.source_at} of a {source.n_tokens}-token text into token "
                            f"{p.at} of this {len(ids)}-token text, which do not both exist: the run is shown without "
                            "the patch.", fits=False)
    into = token_text(model.readable(ids[p.at: p.at + 1])[0])
    note = (f"Patched run: {heads_text(p.heads, cfg.n_heads)} carry their z from token {p.source_at} "
            f"“{token_text(source.tokens[p.source_at])}” of “{p.source}” into token {p.at} “{into}” of this text.")
    return Applied(patch=patch_from(source, p.source_at, p.at, p.heads), note=note)


def notice(applied: Applied) -> None:
    """The patch (or why it was not applied) under the main caption, and the button that clears it."""
    if not applied.note:
        return
    (st.caption if applied.fits else st.warning)(markdown_literal(applied.note))
    st.button("Clear the patch", key="clear_patch", on_click=state.update, kwargs={"patch": None},
              help="Back to the unpatched run of this text (the Compare view sets a patch when you click a cell).")
