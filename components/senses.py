"""Word senses: one word in several sentences, its contextual vector compared layer by layer."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import engine
from engine.analysis import lens
from engine.analysis import senses as analysis

from . import content
from .labels import markdown_literal, plotly_escape, token_text
from .plot import chart

MAX_SENTENCES = 12
POOLS = {"last sub-token": "last", "mean of sub-tokens": "mean"}
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


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


def _keep_valid(key: str, valid: Callable[[object], bool], default) -> bool:
    """Reset a widget's stale session value (a shorter text, another model); True when the key holds a value."""
    if key in st.session_state and not valid(st.session_state[key]):
        st.session_state[key] = default
    return key in st.session_state


def _sense_colors(labels: Sequence[str]) -> list[str]:
    senses = list(dict.fromkeys(labels))
    return [COLORS[senses.index(label) % len(COLORS)] for label in labels]


# ---- figures ------------------------------------------------------------------------------------------

def similarity_figure(sim: np.ndarray, names: Sequence[str], title: str, zmin: float | None = None) -> go.Figure:
    """Cosine similarity [S, S] between the sentences' target vectors; zmin fixes the colour scale's floor."""
    labels = [plotly_escape(n) for n in names]
    heatmap = go.Heatmap(z=sim, x=labels, y=labels, zmin=float(sim.min()) if zmin is None else zmin, zmax=1.0,
                         colorscale="Viridis", texttemplate="%{z:.2f}",
                         colorbar=dict(title=dict(text="cosine")),
                         hovertemplate="%{y}<br>%{x}<br>cosine %{z:.3f}<extra></extra>")
    return go.Figure(data=[heatmap], layout=dict(
        yaxis=dict(autorange="reversed", type="category"), xaxis=dict(type="category"),
        title=dict(text=title), height=420, margin=dict(l=10, r=10, t=50, b=10),
    ))


def similarity_lines_figure(similarity: np.ndarray, names: Sequence[str], labels: Sequence[str]) -> go.Figure:
    """Similarity of every pair across layers (faint), with the same-sense and different-sense means."""
    steps = content.layer_names(similarity.shape[0] - 1)
    traces = []
    same, different = analysis.sense_pairs(labels)
    kind = {pair: "same" for pair in same} | {pair: "different" for pair in different}
    colors = {"same": "#2ca02c", "different": "#d62728", "pair": "grey"}
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            group = kind.get((i, j), "pair")
            traces.append(go.Scatter(x=steps, y=similarity[:, i, j], mode="lines", opacity=0.35, showlegend=False,
                                     line=dict(color=colors[group], width=1),
                                     hovertext=plotly_escape(f"{names[i]} · {names[j]} ({group} sense)"),
                                     hovertemplate="%{hovertext}<br>%{x}: %{y:.3f}<extra></extra>"))
    for name, curve in analysis.sense_curves(similarity, labels).items():
        traces.append(go.Scatter(x=steps, y=curve, mode="lines+markers", name=f"mean, {name}-sense pairs",
                                 line=dict(color=colors[name], width=3)))
    return go.Figure(data=traces, layout=dict(
        title=dict(text="Cosine similarity across layers"), yaxis=dict(title=dict(text="cosine")), height=420,
        margin=dict(l=10, r=10, t=50, b=10), legend=dict(x=0, y=0),
    ))


def trajectory_figure(coords: np.ndarray, basis, names: Sequence[str], labels: Sequence[str]
                      ) -> go.Figure:
    """One 2D path per sentence through the layers (coords [S, n_layers + 1, 2])."""
    steps = content.layer_names(coords.shape[1] - 1)
    traces = []
    for name, path, color in zip(names, coords, _sense_colors(labels), strict=True):
        text = ["emb"] + [""] * (len(steps) - 2) + ["last"]
        traces.append(go.Scatter(x=path[:, 0], y=path[:, 1], mode="lines+markers+text", name=plotly_escape(name),
                                 text=text, textposition="top center", line=dict(color=color),
                                 hovertext=[plotly_escape(f"{name}<br>{s}") for s in steps], hoverinfo="text"))
    return go.Figure(data=traces, layout=dict(
        xaxis=dict(title=dict(text=f"PC1 ({basis.explained[0]:.0%})")),
        yaxis=dict(title=dict(text=f"PC2 ({basis.explained[1]:.0%})"), scaleanchor="x", scaleratio=1),
        title=dict(text="The target's direction, layer by layer (unit vectors, one PCA basis)"), height=520,
        margin=dict(l=10, r=10, t=50, b=10),
    ))


def divergence_figure(div: np.ndarray) -> go.Figure:
    """[n_layers, n_heads] mean ‖Δe_a − Δe_b‖ at the target."""
    heatmap = go.Heatmap(z=div, colorscale="Magma", colorbar=dict(title=dict(text="‖Δe_a − Δe_b‖")),
                         hovertemplate="layer %{y}, head %{x}<br>%{z:.3f}<extra></extra>")
    return go.Figure(data=[heatmap], layout=dict(
        xaxis=dict(title=dict(text="head"), dtick=1), yaxis=dict(title=dict(text="layer"), autorange="reversed"),
        title=dict(text="Which heads push the senses apart"), height=max(300, 14 * div.shape[0] + 140),
        margin=dict(l=10, r=10, t=50, b=10),
    ))


# ---- analysis, cached per set of traces ----------------------------------------------------------------

@st.cache_resource(max_entries=8, show_spinner=False)
def _analyse(cache_key: tuple, _model: engine.Model, _traces: tuple, spans: tuple, labels: tuple, pool: str,
             ) -> dict:
    vectors = np.stack([analysis.word_vectors(t, s, pool) for t, s in zip(_traces, spans, strict=True)])
    coords, basis = analysis.sense_trajectories(vectors)
    return {"vectors": vectors, "similarity": analysis.similarity_by_layer(vectors), "coords": coords,
            "basis": basis, "divergence": analysis.divergent_heads(_traces, [s[-1] for s in spans], labels),
            "lens": lens.sense_lens(_model, vectors, k=3)}


# ---- tab -----------------------------------------------------------------------------------------------

def _inputs(model: engine.Model, key: str) -> tuple[list[tuple[str, str]], str, str, bool]:
    preset = st.selectbox("Preset", list(content.SENSE_PRESETS), key=f"{key}_preset")
    left, right = st.columns([3, 1])
    with left:
        text = st.text_area("Sentences, one per line: “sense | sentence” (the sense label is optional)",
                            value=preset_text(preset), height=150, key=f"{key}_text_{preset}")
    with right:
        word = st.text_input("Target word", value=content.SENSE_PRESETS[preset]["word"], key=f"{key}_word_{preset}")
        pool = POOLS[st.radio("A word split into several tokens", list(POOLS), key=f"{key}_pool")]
    mask_off = False
    name = markdown_literal(model.config.name)
    if model.config.causal:
        st.info(f"{name} is causal: a word's vector can only use the words before it, never the "
                "context after it, so the presets put the telling words first.")
        mask_off = st.checkbox("Experiment: turn the causal mask off (every word sees every word, which this model "
                               "was never trained for)", key=f"{key}_mask_off")
    else:
        st.caption(f"{name} is bidirectional: a word's vector uses context on both sides.")
    return parse_sentences(text)[:MAX_SENTENCES], word.strip(), pool, mask_off


def render(model: engine.Model, trace: engine.Trace, run: Callable[[str, bool | None], engine.Trace], *,
           layer: int, head: int, key: str) -> None:
    """The word-senses tab: several sentences, one target word, its vector compared across layers."""
    st.subheader("Word senses: one word, several contexts")
    sentences, word, pool, mask_off = _inputs(model, key)
    if not word:
        st.warning("Type a target word.")
        return
    try:
        traces = [run(text, False if mask_off else None) for _, text in sentences]
    except engine.EngineError as err:  # bad text, or the server's limits (runs per minute, memory)
        st.error(markdown_literal(f"Could not run a sentence: {err}"))
        return

    found, missing = [], []
    for i, ((label, text), t) in enumerate(zip(sentences, traces, strict=True)):
        spans = [s for s in analysis.find_word(model, text, word) if s[-1] < t.n_tokens]
        if not spans:
            missing.append(i + 1)
            continue
        pick = len(spans) - 1
        if len(spans) > 1:
            state, options = f"{key}_occ_{i}", list(range(len(spans)))
            has = _keep_valid(state, options.__contains__, pick)
            pick = st.selectbox(markdown_literal(f"Sentence {i + 1} has “{word}” {len(spans)} times: which one?"),
                                options, key=state, **({} if has else {"index": pick}),
                                format_func=lambda o, s=spans: f"occurrence {o + 1} (token {s[o][0]})")
        found.append((i, label, t, spans[pick]))
    if missing:
        st.warning(markdown_literal(f"“{word}” is not a whole word in sentence(s) {', '.join(map(str, missing))}; "
                                    "they are left out."))
    if len(found) < 2:
        st.warning(markdown_literal(f"At least two sentences must contain “{word}” to compare its senses."))
        return

    names = [f"{i + 1}: {label}" if label else f"{i + 1}" for i, label, _, _ in found]
    labels = tuple(label for _, label, _, _ in found)
    spans = tuple(tuple(span) for *_, span in found)
    traces = tuple(t for _, _, t, _ in found)
    st.dataframe(pd.DataFrame({"sentence": names, "text": [sentences[i][1] for i, *_ in found],
                               "target tokens": [" ".join(token_text(t.tokens[p]) for p in s)
                                                 for t, s in zip(traces, spans, strict=True)]}),
                 hide_index=True, key=f"{key}_sentences")
    cache_key = (model.config.name, model.source, tuple(t.uid for t in traces), spans, labels, pool)
    data = _analyse(cache_key, model, traces, spans, labels, pool)

    steps = content.layer_names(model.config.n_layers)
    last = len(steps) - 1
    state = f"{key}_layer"
    has = _keep_valid(state, range(last + 1).__contains__, last)
    at = st.select_slider("Layer", list(range(len(steps))), key=state, format_func=lambda p: steps[p],
                          **({} if has else {"value": last}))
    left, right = st.columns(2)
    with left:
        title = f"Cosine similarity, {steps[at]}"
        floor = float(data["similarity"].min())  # one colour scale for every layer
        chart(similarity_figure(data["similarity"][at], names, title, zmin=floor), f"{key}_sim")
    with right:
        chart(similarity_lines_figure(data["similarity"], names, labels), f"{key}_sim_lines")
    chart(trajectory_figure(data["coords"], data["basis"], names, labels), f"{key}_paths")

    st.subheader("The heads that pushed the senses apart")
    pairs = "different-sense" if analysis.sense_pairs(labels)[1] else "all"
    st.caption(f"Mean distance ‖Δe_a − Δe_b‖ between the heads' Δe at the target's last token, over {pairs} pairs "
               "of sentences.")
    chart(divergence_figure(data["divergence"]), f"{key}_div")
    top = analysis.top_heads(data["divergence"], 5)
    choices = [f"layer {la}, head {h}  ({v:.2f})" for la, h, v in top]
    state = f"{key}_top_head"
    _keep_valid(state, lambda c: c in choices, choices[0])
    choice = st.selectbox("Head", choices, key=state)
    la, h, _ = top[choices.index(choice)]
    rows = []
    for name, t, span in zip(names, traces, spans, strict=True):
        seen = analysis.attended(t, la, h, span[-1], 3)
        rows.append({"sentence": name, "‖Δe‖ at the target": float(analysis.head_out_at(t, la, span[-1])[h].norm()),
                     "attends to": "; ".join(f"{token_text(tok)} ({w:.2f})" for _, tok, w in seen)})
    st.dataframe(pd.DataFrame(rows), hide_index=True, key=f"{key}_attended")

    st.subheader("Logit lens of the target, layer by layer")
    note = content.lens_note(model.config)
    if model.config.causal:
        note += " In a causal language model the last layers read out its guess for the next word."
    st.caption(note)
    lens = pd.DataFrame({name: [" · ".join(token_text(x) for x in data["lens"][s][p]) for p in range(len(steps))]
                         for s, name in enumerate(names)}, index=pd.Index(steps, name="layer"))
    st.dataframe(lens, key=f"{key}_lens")
