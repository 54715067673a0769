"""Tab "Compare": two texts A and B with a target word in each (e.g. "mole" as an animal and as a chemistry unit):
the target's attention side by side, how differently each head treats it, its similarity across layers (as in
Word senses), and activation patching from A into B (components/views/_patching.py). The texts, the targets and
the sweep's settings are kept in the link; a clicked patch becomes the app's run (state.Patch)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

import engine
from components import content, state
from components.derived import per_trace
from components.figures.compare import attention_row_figure, distance_figure, similarity_figure
from components.figures.pattern import pattern_figure
from components.labels import markdown_literal, token_text
from components.state import Field
from components.views import _patching
from components.views._pair import Pair
from components.views.context import ViewContext
from components.widgets import select
from engine.analysis import compare, senses
from engine.arrays import readonly

MAX_TEXT = 500  # characters of each text (they travel in the link)
DEFAULT = "mole_chemistry"
PRESET = Field("compare.preset", DEFAULT, choices=tuple(content.COMPARE_PRESETS))
TEXT_A = Field("compare.a", content.COMPARE_PRESETS[DEFAULT]["a"][1], max_chars=MAX_TEXT)
TEXT_B = Field("compare.b", content.COMPARE_PRESETS[DEFAULT]["b"][1], max_chars=MAX_TEXT)
WORD_A = Field("compare.word_a", content.COMPARE_PRESETS[DEFAULT]["word"], max_chars=60)
WORD_B = Field("compare.word_b", content.COMPARE_PRESETS[DEFAULT]["word"], max_chars=60)
OCC_A = Field("compare.occ_a", -1)  # which occurrence of the word: -1 = the last
OCC_B = Field("compare.occ_b", -1)
FIELDS = (PRESET, TEXT_A, TEXT_B, WORD_A, WORD_B, OCC_A, OCC_B, *_patching.FIELDS)
TOP = 5


def render(ctx: ViewContext) -> None:
    """The inputs, then the comparison; input that does not work gets a message and the last comparison that
    worked (with this model) stays on the page."""
    st.subheader("Compare two contexts: what the word attends to, and which heads carry the difference")
    texts, words = inputs(ctx.state)
    pair, problem = locate(ctx, texts, words)
    if problem:
        last = state.last_good("compare")
        last = last if last is not None and last[0] == ctx.model.config.name else None
        st.warning(markdown_literal(problem) + (" Showing the last comparison that worked." if last else ""))
        if last is None:
            return
        _, text_a, text_b, span_a, span_b = last
        pair = Pair(text_a, text_b, ctx.run(text_a, None), ctx.run(text_b, None), span_a, span_b)
    else:
        state.remember_good("compare", (ctx.model.config.name, pair.text_a, pair.text_b, pair.span_a, pair.span_b))
    if ctx.base is not None:
        st.caption("The comparison uses the unmodified runs of A and B (the model's own mask, every head on), "
                   "whatever the sidebar switches.")
    targets_table(ctx, pair)
    render_attention(ctx, pair)
    render_distances(ctx, pair)
    render_similarity(ctx, pair)
    _patching.render(ctx, pair)


def apply_preset() -> None:
    """on_change of the preset picker: both texts and both words from the preset, the occurrences reset."""
    preset = content.COMPARE_PRESETS[st.session_state["compare_preset"]]
    state.set_value(PRESET, st.session_state["compare_preset"])
    for f, value in ((TEXT_A, preset["a"][1]), (TEXT_B, preset["b"][1]), (WORD_A, preset["word"]),
                     (WORD_B, preset["word"]), (OCC_A, -1), (OCC_B, -1)):
        state.set_value(f, value)


def inputs(s: state.AppState) -> tuple[tuple[str, str], tuple[str, str]]:
    """((text A, text B), (word A, word B)) as typed; each goes into the link. A widget's key names the preset, so
    choosing a preset gives fresh widgets that start from its fields."""
    presets = list(content.COMPARE_PRESETS)
    preset = st.selectbox("Preset", presets, index=presets.index(s.value(PRESET)), key="compare_preset",
                          format_func=lambda p: content.COMPARE_PRESETS[p]["label"], on_change=apply_preset)
    typed = {}
    for (side, text, word), column in zip((("a", TEXT_A, WORD_A), ("b", TEXT_B, WORD_B)), st.columns(2), strict=True):
        with column:
            typed[text] = st.text_area(f"Text {side.upper()}", value=s.value(text), height=90, max_chars=MAX_TEXT,
                                       key=f"compare_{side}_{preset}")
            typed[word] = st.text_input(f"Target word in {side.upper()}", value=s.value(word), max_chars=60,
                                        key=f"compare_word_{side}_{preset}")
    for f, value in typed.items():
        state.set_value(f, value)
    return (typed[TEXT_A], typed[TEXT_B]), (typed[WORD_A].strip(), typed[WORD_B].strip())


def locate(ctx: ViewContext, texts: tuple[str, str], words: tuple[str, str]) -> tuple[Pair | None, str]:
    """The pair of runs with their targets, or (None, what is wrong) for the page."""
    spans, traces = [], []
    for side, text, word, occ in zip("AB", texts, words, (OCC_A, OCC_B), strict=True):
        if not text.strip():
            return None, f"Text {side} is empty: type a sentence with the target word."
        if not word:
            return None, f"Type a target word for text {side}."
        try:
            trace = ctx.run(text, None)
        except engine.InputError as err:
            return None, f"Text {side} could not be run: {err}"
        found = [s for s in senses.find_word(ctx.model, text, word) if s[-1] < trace.n_tokens]
        if not found:
            return None, f"“{word}” is not a whole word of text {side} (whole words, any case), so it has no target."
        spans.append(tuple(found[occurrence(occ, found, side, word, ctx.state)]))
        traces.append(trace)
    return Pair(texts[0], texts[1], traces[0], traces[1], spans[0], spans[1]), ""


def occurrence(f: Field, spans: list[list[int]], side: str, word: str, s: state.AppState) -> int:
    """Which occurrence of the word is the target: the last, unless the visitor picks another (kept in the link)."""
    last = len(spans) - 1
    kept = s.value(f)
    pick = kept if 0 <= kept <= last else last
    if last > 0:
        pick = select(markdown_literal(f"Text {side} has “{word}” {len(spans)} times: which one?"),
                      list(range(len(spans))), f"compare_occ_{side}", pick,
                      format_func=lambda o: f"occurrence {o + 1} (token {spans[o][-1]})")
    state.set_value(f, -1 if pick == last else pick)
    return pick


def targets_table(ctx: ViewContext, pair: Pair) -> None:
    sides = (("A", pair.text_a, pair.a, pair.span_a), ("B", pair.text_b, pair.b, pair.span_b))
    rows = [{"text": side, "sentence": text, "target tokens": " ".join(token_text(trace.tokens[p]) for p in span),
             "target position": span[-1], "tokens": trace.n_tokens} for side, text, trace, span in sides]
    ctx.table(pd.DataFrame(rows), hide_index=True, key="compare_targets")
    st.caption("A word split into several tokens is represented by its last token (the target), as in Word senses.")


def render_attention(ctx: ViewContext, pair: Pair) -> None:
    """The target's attention row in A and in B for the sidebar's layer and head, on one colour scale."""
    layer, head = ctx.layer, ctx.head
    st.subheader(f"What the target attends to · layer {layer}, head {head}")
    rows = [readonly(trace.pattern_rows(layer, slice(target, target + 1), head)[0])  # [n_key] each
            for trace, target in ((pair.a, pair.target_a), (pair.b, pair.target_b))]
    top = max(float(rows[0].max()), float(rows[1].max()), 1e-6)
    st.caption(f"The target's row of the pattern (layer and head from the sidebar) over its own sentence; one colour "
               f"scale for both, 0 to the larger top weight ({top:.2f}). The target itself is outlined.")
    sides = (("A", pair.a, pair.target_a), ("B", pair.b, pair.target_b))
    for (side, trace, target), row in zip(sides, rows, strict=True):
        ctx.chart(attention_row_figure(row, trace.tokens, target, title=f"{side}: the target's attention",
                                       zmax=top), key=f"compare_row_{side.lower()}")
    if not st.toggle("Show both full patterns", key="compare_full"):
        return
    for (side, trace, _), column in zip(sides, st.columns(2), strict=True):
        with column:
            fig = pattern_figure(readonly(trace["pattern", layer, head]), trace.tokens, layout=ctx.state.layout,
                                 title=f"{side}: layer {layer}, head {head}")
            ctx.chart(fig, key=f"compare_pattern_{side.lower()}")


def render_distances(ctx: ViewContext, pair: Pair) -> None:
    """1 − cos of A's and B's head_out at the targets, per head, with the top heads listed."""
    st.subheader("How differently each head treats the target")
    st.caption("Per head, the cosine distance 1 − cos between its head_out (Δe, z @ W_O) at A's target and at B's: "
               "0 = it writes the same direction in both contexts, 1 = orthogonal, 2 = opposite.")
    distances = per_trace(compare.head_distances, pair.a, pair.target_a, pair.b, pair.target_b)
    ctx.chart(distance_figure(distances), key="compare_distances")
    top = senses.top_heads(np.nan_to_num(distances, nan=-np.inf), TOP)
    ctx.table(pd.DataFrame({"layer": [la for la, _, _ in top], "head": [h for _, h, _ in top],
                            "1 − cos": [v for _, _, v in top]}), hide_index=True, key="compare_top_heads")


def render_similarity(ctx: ViewContext, pair: Pair) -> None:
    """The targets' cosine similarity across layers: the Word senses computation for these two sentences."""
    st.subheader("The target's similarity across layers")
    similarity = per_trace(compare.layer_similarity, pair.a, pair.target_a, pair.b, pair.target_b)
    st.caption(f"Cosine between A's and B's target in the residual stream, at the embedding and after each block: "
               f"the similarity Word senses shows for these two sentences (pooling: last sub-token). "
               f"{similarity[0]:.3f} at the embedding, {similarity[-1]:.3f} after the last block.")
    ctx.chart(similarity_figure(similarity), key="compare_similarity")
