"""Tab "Interventions": switch heads off (buttons and a layers × heads grid of switches) and see the prediction
change against the unmodified run. The mask is in the sidebar."""

from __future__ import annotations

import zlib

import pandas as pd
import streamlit as st

from components import state
from components.state import MASKS
from components.views._predictions import render_predictions
from components.views.context import ViewContext


def switch_grid_key(heads_off: frozenset[tuple[int, int]]) -> str:
    """The switch grid's widget key, new for every set of heads off: the grid then starts from the state, with
    no edits left over from before a button changed it."""
    return f"head_switches_{zlib.crc32(repr(sorted(heads_off)).encode()):08x}"


def apply_switch_edits(key: str, heads_off: frozenset[tuple[int, int]], n_heads: int) -> None:
    """on_change of the switch grid: apply the edited cells to the set of heads switched off."""
    off = set(heads_off)
    for row, changes in st.session_state[key].get("edited_rows", {}).items():
        for column, on in changes.items():
            head = int(str(column).removeprefix("head "))
            if 0 <= head < n_heads:
                (off.discard if on else off.add)((int(row), head))
    state.update(heads_off=frozenset(off))


def render(ctx: ViewContext) -> None:
    cfg, layer, head, off = ctx.model.config, ctx.layer, ctx.head, ctx.state.heads_off
    st.subheader("Switch heads off, change the mask")
    st.caption("A head switched off adds nothing (Δe = 0) and everything downstream is recomputed. The mask is in "
               "the sidebar: “none” lets every token see every token, even in a causal model.")
    every = frozenset((la, h) for la in range(cfg.n_layers) for h in range(cfg.n_heads))
    layer_heads = frozenset((layer, h) for h in range(cfg.n_heads))
    toggled = off ^ {(layer, head)}
    buttons = (("heads_all_on", "All on", frozenset()), ("heads_all_off", "All off", every),
               ("heads_layer_off", f"Layer {layer} off", off | layer_heads),
               ("heads_layer_on", f"Layer {layer} on", off - layer_heads),
               ("heads_toggle_this", f"Toggle head {layer}.{head}", toggled))
    for column, (key, label, heads_off) in zip(st.columns(len(buttons)), buttons, strict=True):
        column.button(label, key=key, on_click=state.update, kwargs={"heads_off": heads_off})

    grid = pd.DataFrame({f"head {h}": [(la, h) not in off for la in range(cfg.n_layers)] for h in range(cfg.n_heads)})
    grid.index.name = "layer"
    key = switch_grid_key(off)
    st.data_editor(grid, key=key, on_change=apply_switch_edits, args=(key, off, cfg.n_heads),
                   column_config={c: st.column_config.CheckboxColumn(c, width="small") for c in grid.columns},
                   height=min(38 + 35 * cfg.n_layers, 420))
    st.caption(f"{len(off)} of {cfg.n_layers * cfg.n_heads} heads off · mask: {MASKS[ctx.state.mask]}")
    render_predictions(ctx, key="interventions")
