"""Tab "Word senses": one word in several sentences, its contextual vector compared layer by layer, the heads that
pushed the senses apart, and a logit-lens reading of the word at every layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import streamlit as st

import engine
from components import content
from components.derived import per_trace
from components.figures.senses import (
    divergence_figure,
    similarity_figure,
    similarity_lines_figure,
    trajectory_figure,
)
from components.labels import markdown_literal, token_text
from components.views.context import ViewContext
from components.widgets import keep_valid, select
from engine.analysis import lens
from engine.analysis import senses as analysis

MAX_SENTENCES = 12
POOLS = {"last": "last sub-token", "mean": "mean of sub-tokens"}  # how a word split into tokens becomes one vector


class Target(NamedTuple):
    """One occurrence of the target word: in sentence `index` (0-based), labelled with its sense."""

    index: int
    label: str
    trace: engine.Trace
    span: tuple[int, ...]  # the word's token positions


def preset_text(name: str) -> str:
    """The editable text of a preset: one 'sense | sentence' per line."""
    return "\n".join(f"{label} | {text}" for label, text in content.SENSE_PRESETS[name]["sentences"])


def parse_sentences(text: str) -> list[tuple[str, str]]:
    """Lines 'sense | sentence' or just 'sentence' -> [(sense or '', sentence)], empty lines skipped."""
    out = []
    for line in text.splitlines():
        label, sep, sentence = line.partition("|")
        label, sentence = (label.strip(), sentence.strip()) if sep else ("", line.strip())
        if sentence:
            out.append((label, sentence))
    return out


def analyse(model: engine.Model, traces: tuple[engine.Trace, ...], spans: tuple[tuple[int, ...], ...],
            labels: tuple[str, ...], pool: str) -> dict:
    """Everything the tab draws from the targets' vectors (cached per set of traces)."""
    vectors = np.stack([analysis.word_vectors(t, s, pool) for t, s in zip(traces, spans, strict=True)])
    coords, basis = analysis.sense_trajectories(vectors)  # vectors: [S, n_layers + 1, d_model]
    return {"vectors": vectors, "similarity": analysis.similarity_by_layer(vectors), "coords": coords,
            "basis": basis, "divergence": analysis.divergent_heads(traces, [s[-1] for s in spans], labels),
            "lens": lens.sense_lens(model, vectors, k=3)}


def render(ctx: ViewContext) -> None:
    model = ctx.model
    st.subheader("Word senses: one word, several contexts")
    sentences, word, pool, mask_off = inputs(model)
    if not word:
        st.warning("Type a target word.")
        return
    try:
        traces = [ctx.run(text, False if mask_off else None) for _, text in sentences]
    except engine.EngineError as err:  # bad text, or the server's limits (runs per minute, memory)
        st.error(markdown_literal(f"Could not run a sentence: {err}"))
        return
    found = locate(model, sentences, traces, word)
    if len(found) < 2:
        st.warning(markdown_literal(f"At least two sentences must contain “{word}” to compare its senses."))
        return

    names = [f"{t.index + 1}: {t.label}" if t.label else f"{t.index + 1}" for t in found]
    labels = tuple(t.label for t in found)
    spans = tuple(t.span for t in found)
    traces = tuple(t.trace for t in found)
    ctx.table(pd.DataFrame({"sentence": names, "text": [sentences[t.index][1] for t in found],
                               "target tokens": [" ".join(token_text(t.trace.tokens[p]) for p in t.span)
                                                 for t in found]}),
                 hide_index=True, key="senses_sentences")
    data = per_trace(analyse, model, traces, spans, labels, pool)

    steps = content.layer_names(model.config.n_layers)
    last = len(steps) - 1
    has = keep_valid("senses_layer", range(last + 1).__contains__, last)
    at = st.select_slider("Layer", list(range(len(steps))), key="senses_layer", format_func=lambda p: steps[p],
                          **({} if has else {"value": last}))
    left, right = st.columns(2)
    with left:
        floor = float(data["similarity"].min())  # one colour scale for every layer
        ctx.chart(similarity_figure(data["similarity"][at], names, f"Cosine similarity, {steps[at]}", zmin=floor),
                  "senses_sim")
    with right:
        ctx.chart(similarity_lines_figure(data["similarity"], names, labels), "senses_sim_lines")
    ctx.chart(trajectory_figure(data["coords"], data["basis"], names, labels), "senses_paths")
    render_heads(ctx, data["divergence"], names, found)
    render_lens(ctx, data["lens"], names, steps)


def inputs(model: engine.Model) -> tuple[list[tuple[str, str]], str, str, bool]:
    """(sentences as (sense, text), the target word, the pooling id, whether to turn the causal mask off)."""
    preset = st.selectbox("Preset", list(content.SENSE_PRESETS), key="senses_preset")
    left, right = st.columns([3, 1])
    with left:
        text = st.text_area("Sentences, one per line: “sense | sentence” (the sense label is optional)",
                            value=preset_text(preset), height=150, key=f"senses_text_{preset}")
    with right:
        word = st.text_input("Target word", value=content.SENSE_PRESETS[preset]["word"], key=f"senses_word_{preset}")
        pool = st.radio("A word split into several tokens", list(POOLS), key="senses_pool", format_func=POOLS.get)
    mask_off = False
    name = markdown_literal(model.config.name)
    if model.config.causal:
        st.info(f"{name} is causal: a word's vector can only use the words before it, never the "
                "context after it, so the presets put the telling words first.")
        mask_off = st.checkbox("Experiment: turn the causal mask off (every word sees every word, which this model "
                               "was never trained for)", key="senses_mask_off")
    else:
        st.caption(f"{name} is bidirectional: a word's vector uses context on both sides.")
    return parse_sentences(text)[:MAX_SENTENCES], word.strip(), pool, mask_off


def locate(model: engine.Model, sentences: Sequence[tuple[str, str]], traces: Sequence[engine.Trace],
           word: str) -> list[Target]:
    """The target word in each sentence that has it (the visitor picks among several occurrences)."""
    found, missing = [], []
    for i, ((label, text), trace) in enumerate(zip(sentences, traces, strict=True)):
        spans = [s for s in analysis.find_word(model, text, word) if s[-1] < trace.n_tokens]
        if not spans:
            missing.append(i + 1)
            continue
        pick = len(spans) - 1
        if len(spans) > 1:
            pick = select(markdown_literal(f"Sentence {i + 1} has “{word}” {len(spans)} times: which one?"),
                          list(range(len(spans))), f"senses_occ_{i}", pick,
                          format_func=lambda o, s=spans: f"occurrence {o + 1} (token {s[o][0]})")
        found.append(Target(i, label, trace, tuple(spans[pick])))
    if missing:
        st.warning(markdown_literal(f"“{word}” is not a whole word in sentence(s) {', '.join(map(str, missing))}; "
                                    "they are left out."))
    return found


def render_heads(ctx: ViewContext, divergence: np.ndarray, names: Sequence[str], found: Sequence[Target]) -> None:
    """The heads whose Δe differ most between the senses, and what a chosen one attends to in each sentence."""
    st.subheader("The heads that pushed the senses apart")
    pairs = "different-sense" if analysis.sense_pairs([t.label for t in found])[1] else "all"
    st.caption(f"Mean distance ‖Δe_a − Δe_b‖ between the heads' Δe at the target's last token, over {pairs} pairs "
               "of sentences.")
    ctx.chart(divergence_figure(divergence), "senses_div")
    top = analysis.top_heads(divergence, 5)  # [(layer, head, distance)]
    choices = [f"layer {la}, head {h}  ({v:.2f})" for la, h, v in top]
    la, h, _ = top[choices.index(select("Head", choices, "senses_top_head", choices[0]))]
    rows = []
    for name, t in zip(names, found, strict=True):
        seen = analysis.attended(t.trace, la, h, t.span[-1], 3)
        rows.append({"sentence": name,
                     "‖Δe‖ at the target": float(analysis.head_out_at(t.trace, la, t.span[-1])[h].norm()),
                     "attends to": "; ".join(f"{token_text(tok)} ({w:.2f})" for _, tok, w in seen)})
    ctx.table(pd.DataFrame(rows), hide_index=True, key="senses_attended")


def render_lens(ctx: ViewContext, readings: list, names: Sequence[str], steps: Sequence[str]) -> None:
    """The target's top tokens through the unembedding, per sentence and layer."""
    model = ctx.model
    st.subheader("Logit lens of the target, layer by layer")
    note = content.lens_note(model.config)
    if model.config.causal:
        note += " In a causal language model the last layers read out its guess for the next word."
    st.caption(note)
    table = pd.DataFrame({name: [" · ".join(token_text(x) for x in readings[s][p]) for p in range(len(steps))]
                          for s, name in enumerate(names)}, index=pd.Index(steps, name="layer"))
    ctx.table(table, key="senses_lens")
