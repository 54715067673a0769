"""The explorer's tabs: pattern and scores, all heads, query·key detail, interventions and predictions.

Each `render_*` takes a `View` (the model, the current trace, the unmodified trace when an intervention is
active, and the selection) and draws with the figure builders of the sibling modules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import streamlit as st

import engine
from engine.analysis.head_stats import head_overview
from engine.analysis.predict import top_predictions

from . import deltas, head_grid, param_counts, predictions, projections, qk_detail, senses
from .labels import markdown_literal, token_text
from .pattern import pattern_csv, pattern_figure, scores_figure
from .plot import chart


@dataclass
class View:
    model: engine.Model
    trace: engine.Trace
    base: engine.Trace | None  # the unmodified run, when a mask or head switch is active
    layer: int
    head: int
    layout: str  # "query_rows" | "key_rows"
    run: Callable[[str, bool | None], engine.Trace]  # cached engine call, for views that run other texts

    @property
    def head_off(self) -> bool:
        return not bool(self.trace.head_mask[self.layer, self.head])


def numpy(t) -> np.ndarray:
    return t.detach().float().cpu().numpy()


# ---- cached derived data, keyed by the trace's unique id -----------------------------------------------

@st.cache_resource(max_entries=8, show_spinner=False)
def _overview(trace_id: int, _trace: engine.Trace):
    """Every head's thumbnail and summary statistics, in one block-by-block pass over the patterns."""
    return head_overview(_trace)


@st.cache_resource(max_entries=32, show_spinner=False)
def _grid_figure(trace_id: int, _trace: engine.Trace, selected: tuple[int, int]):
    disabled = ~_trace.head_mask.numpy()
    return head_grid.head_grid_figure(_overview(trace_id, _trace).thumbnails, selected=selected, disabled=disabled)


@st.cache_resource(max_entries=8, show_spinner=False)
def _head_stat_views(trace_id: int, _trace: engine.Trace):
    """Per-head summary: one small figure per statistic, and the table."""
    stats = _overview(trace_id, _trace).stats()
    figures = {name: head_grid.head_stat_figure(stats[name], title, name) for name, title in STAT_TITLES.items()}
    return figures, head_grid.head_summary_table(stats)


STAT_TITLES = {"entropy": "entropy (bits)", "first": "share on first token", "previous": "share on previous token",
               "self": "share on itself"}


@st.cache_resource(max_entries=32, show_spinner=False)
def _prediction_view(trace_id: int, base_id: int | None, position: int, _model: engine.Model,
                     _trace: engine.Trace, _base: engine.Trace | None):
    """(figure, table or None) of the top-10 next tokens, with the unmodified run beside when given."""
    rows = top_predictions(_model, _trace, position, k=10, base=_base)
    if _base is None:
        return predictions.prediction_figure(rows), None
    base_rows = top_predictions(_model, _base, position, k=10, base=_trace)
    return predictions.prediction_figure(base_rows, rows), predictions.prediction_table(base_rows, rows)


# ---- tab: pattern and scores --------------------------------------------------------------------------

def render_pattern_tab(v: View) -> None:
    layer, head, trace = v.layer, v.head, v.trace
    tokens = trace.tokens
    pattern = numpy(trace["pattern", layer, head])  # [n, n]
    scores = numpy(trace["scores", layer, head])  # [n, n]
    masked = trace.masked().cpu().numpy()  # [n, n]
    if v.head_off:
        st.warning(f"Head {layer}.{head} is switched off: its pattern is computed but it adds nothing (Δe = 0).")
    left, right = st.columns(2)
    with left:
        st.subheader(f"Attention pattern · layer {layer}, head {head}")
        sums = "each row sums to 1" if v.layout == "query_rows" else "each column sums to 1 (the notes' layout)"
        st.caption(f"softmax over keys of the masked scores; {sums}")
        own_scale = st.toggle("colour scale up to this head's largest weight (default: 0 to 1 for every head)",
                              key="pattern_own_scale")
        chart(pattern_figure(pattern, tokens, layout=v.layout, scores=scores, title="",
                             zmax=None if own_scale else 1.0), key="pattern_fig")
        st.download_button("Download this pattern (CSV)", lambda: pattern_csv(pattern, tokens, v.layout),
                           file_name=f"pattern_layer{layer}_head{head}.csv", mime="text/csv")  # built on click
    with right:
        st.subheader("Scores q·k / √d_head, before softmax")
        st.caption("masked cells (a key after its query, under a causal mask) become −∞ and get weight 0")
        chart(scores_figure(scores, masked, tokens, layout=v.layout), key="scores_fig")
    if trace.n_tokens > ZOOM_ABOVE:
        render_zoom(v, pattern, scores, masked)
    render_predictions(v, key="pattern_tab", choose_position=True)


ZOOM_ABOVE = 128  # longer patterns are drawn as images; a window of them can be read token by token


def render_zoom(v: View, pattern: np.ndarray, scores: np.ndarray, masked: np.ndarray) -> None:
    """A window of at most ZOOM_ABOVE tokens of a long pattern, drawn cell by cell with every label."""
    n = v.trace.n_tokens
    st.subheader("Zoom: read a window token by token")
    start, end = st.slider("token window (query and key positions)", 0, n - 1,
                           value=(max(0, n - 64), n - 1), key="zoom_window")
    if end - start + 1 > ZOOM_ABOVE:
        end = start + ZOOM_ABOVE - 1
        st.caption(f"A window shows at most {ZOOM_ABOVE} tokens: showing {start}–{end}.")
    window = slice(start, end + 1)
    tokens = v.trace.tokens[window]
    left, right = st.columns(2)
    with left:
        chart(pattern_figure(pattern[window, window], tokens, layout=v.layout, scores=scores[window, window],
                             offset=start, title=f"pattern, tokens {start}–{end}"), key="zoom_pattern_fig")
    with right:
        chart(scores_figure(scores[window, window], masked[window, window], tokens, layout=v.layout,
                            offset=start, title=f"scores, tokens {start}–{end}"), key="zoom_scores_fig")
    st.caption("Rows of a window need not sum to 1: a query also attends to keys outside the window.")


# ---- predictions ---------------------------------------------------------------------------------------

def render_predictions(v: View, key: str, choose_position: bool = False) -> None:
    cfg, trace = v.model.config, v.trace
    st.subheader("Next-token prediction")
    if not cfg.has_lm_head:
        st.info(f"{markdown_literal(cfg.name)} is an encoder without a language-model head, so it predicts no next "
                "token. Its attention, Δe and word senses are all here; pick SmolLM2 to see predictions change.")
        return
    n = trace.n_tokens
    s = st.session_state
    if not -n <= int(s.get("position", -1)) < n:
        s.position = -1
    if choose_position:  # the widget has its own key: `position` must outlive tabs where it is not drawn
        labels = [token_text(t) for t in trace.tokens]
        s.position = st.selectbox("after token", list(range(-1, n)), index=int(s.position) + 1,
                                  key="position_widget",
                                  format_func=lambda i: "the last token" if i == -1 else f"{i}: {labels[i]}")
    position = int(s.position)
    base = v.base
    fig, table = _prediction_view(trace.uid, base.uid if base else None, position, v.model, trace, base)
    if table is not None:
        st.caption("An intervention is active: the unmodified run is beside it, with the change in probability.")
    chart(fig, key=f"pred_fig_{key}")
    if table is not None:
        st.dataframe(table, hide_index=True, key=f"pred_table_{key}")


# ---- tab: all heads ------------------------------------------------------------------------------------

def _select_head_from_grid() -> None:
    """on_select of the head grid: focus the pattern view on the clicked thumbnail."""
    points = (st.session_state.get("head_grid_fig") or {}).get("selection", {}).get("points", [])
    if points:
        layer, head = head_grid.point_to_head(points[0])
        if layer is not None:
            st.session_state.layer, st.session_state.head = layer, head


def render_head_grid_tab(v: View) -> None:
    cfg, trace = v.model.config, v.trace
    st.subheader(f"Every head: {cfg.n_layers} layers × {cfg.n_heads} heads")
    st.caption("Each thumbnail is one head's pattern (query rows, key columns). Click one to focus on it; "
               "switched-off heads are crossed out.")
    fig = _grid_figure(trace.uid, trace, (v.layer, v.head))  # thumbnails cached per trace; outline per head
    chart(fig, key="head_grid_fig", on_select=_select_head_from_grid, selection_mode="points")
    figures, table = _head_stat_views(trace.uid, trace)
    st.subheader("Per-head summary")
    for col, (name, stat_fig) in zip(st.columns(len(figures)), figures.items(), strict=True):
        with col:
            chart(stat_fig, key=f"head_stat_{name}")
    st.dataframe(table, hide_index=True, key="head_summary_table")


# ---- tab: query · key detail ---------------------------------------------------------------------------

def render_qk_tab(v: View) -> None:
    trace, layer, head = v.trace, v.layer, v.head
    n = trace.n_tokens
    labels = [token_text(t) for t in trace.tokens]
    s = st.session_state
    if not 0 <= int(s.get("qk_query", n - 1)) < n:
        s.qk_query = n - 1
    query = st.selectbox("Query token (attending from)", list(range(n)), index=n - 1, key="qk_query",
                         format_func=lambda i: f"{i}: {labels[i]}")
    q = numpy(trace["q", layer, head][query])  # [d_head]
    keys = numpy(trace["k", layer, head])  # [n, d_head]
    masked = trace.masked()[query].cpu().numpy()  # [n]
    weights = numpy(trace["pattern", layer, head][query])  # [n]
    top = int(weights.argmax())
    st.markdown(markdown_literal(
        f"Layer {layer}, head {head}: the query of “{token_text(trace.tokens[query])}” matches the key of "
        f"“{token_text(trace.tokens[top])}” best (weight {weights[top]:.3f}). "
        f"Each score is Σᵢ qᵢ·kᵢ / √{trace.config.d_head}."))
    figs = qk_detail.qk_figures(q, keys, trace.tokens, query, masked=masked, d_head=trace.config.d_head)
    chart(figs["scores"], key="qk_scores")
    chart(figs["vectors"], key="qk_vectors")
    chart(figs["products"], key="qk_products")


# ---- tab: interventions --------------------------------------------------------------------------------

def _set_heads_off(heads: frozenset) -> None:
    st.session_state.heads_off = frozenset(heads)
    st.session_state.head_switch_version = st.session_state.get("head_switch_version", 0) + 1


def _apply_switch_edits(key: str, n_heads: int) -> None:
    """on_change of the switch grid: apply the edited cells to the set of heads switched off."""
    edits = st.session_state[key].get("edited_rows", {})
    off = set(st.session_state.heads_off)
    for row, changes in edits.items():
        for column, on in changes.items():
            head = int(str(column).removeprefix("head "))
            if 0 <= head < n_heads:
                (off.discard if on else off.add)((int(row), head))
    _set_heads_off(frozenset(off))


def render_interventions_tab(v: View) -> None:
    cfg = v.model.config
    s = st.session_state
    st.subheader("Switch heads off, change the mask")
    st.caption("A head switched off adds nothing (Δe = 0) and everything downstream is recomputed. The mask is in "
               "the sidebar: “none” lets every token see every token, even in a causal model.")
    every = frozenset((la, h) for la in range(cfg.n_layers) for h in range(cfg.n_heads))
    layer_heads = frozenset((v.layer, h) for h in range(cfg.n_heads))
    buttons = st.columns(5)
    buttons[0].button("All on", on_click=_set_heads_off, args=(frozenset(),), key="heads_all_on")
    buttons[1].button("All off", on_click=_set_heads_off, args=(every,), key="heads_all_off")
    buttons[2].button(f"Layer {v.layer} off", on_click=_set_heads_off, args=(s.heads_off | layer_heads,),
                      key="heads_layer_off")
    buttons[3].button(f"Layer {v.layer} on", on_click=_set_heads_off, args=(s.heads_off - layer_heads,),
                      key="heads_layer_on")
    this = frozenset({(v.layer, v.head)})
    toggled = s.heads_off - this if (v.layer, v.head) in s.heads_off else s.heads_off | this
    buttons[4].button(f"Toggle head {v.layer}.{v.head}", on_click=_set_heads_off, args=(toggled,),
                      key="heads_toggle_this")
    import pandas as pd

    grid = pd.DataFrame({f"head {h}": [(la, h) not in s.heads_off for la in range(cfg.n_layers)]
                         for h in range(cfg.n_heads)})
    grid.index.name = "layer"
    editor_key = f"head_switches_{s.get('head_switch_version', 0)}"
    st.data_editor(grid, key=editor_key, on_change=_apply_switch_edits, args=(editor_key, cfg.n_heads),
                   column_config={c: st.column_config.CheckboxColumn(c, width="small") for c in grid.columns},
                   height=min(38 + 35 * cfg.n_layers, 420))
    st.caption(f"{len(s.heads_off)} of {cfg.n_layers * cfg.n_heads} heads off · mask: {s.mask}")
    render_predictions(v, key="interventions")


# ---- tabs: how meaning moves ---------------------------------------------------------------------------

def _meaning_tab(module, key: str) -> Callable[[View], None]:
    def render(v: View) -> None:
        module.render(v.model, v.trace, v.run, layer=v.layer, head=v.head, key=key)

    return render


TABS: dict[str, Callable[[View], None]] = {
    "Attention pattern": render_pattern_tab,
    "All heads": render_head_grid_tab,
    "Query · key": render_qk_tab,
    "Interventions": render_interventions_tab,
    "Δe: embedding changes": _meaning_tab(deltas, "deltas"),
    "Projections": _meaning_tab(projections, "projections"),
    "Word senses": _meaning_tab(senses, "senses"),
    "Parameters": _meaning_tab(param_counts, "params"),
}
