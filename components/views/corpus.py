"""Tab "Corpus": many texts at once. A corpus (the built-in sample, or a visitor's file: one text per line) runs
through the model in batches, in the server process or on the operator's Ray cluster; the page shows each head's
statistics over the corpus as layers × heads maps, the heads placed by those statistics (coloured by role,
grouped into clusters), and for the focused head the joint query–key map of every token of the corpus
(AttentionViz's normalisation; PCA, or t-SNE on request). A click on a map or a point focuses a head; a click on
a token opens its text in the other tabs. Jobs go through the server's runs: memory reserved in advance, one
job per visitor computing, a progress bar with the texts done and the time left, a cancel button, and the
results cached per model, corpus and token limit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from components import corpus_jobs, state
from components.content import ROLE_LABELS
from components.figures import corpus as figures
from components.labels import markdown_literal, plotly_escape, token_text
from components.state import Field
from components.views.context import ViewContext
from engine import EngineError, corpus
from engine.analysis.roles import ROLES, strongest_roles
from engine.corpus.clusters import FEATURES, cluster_heads
from engine.errors import BudgetExceeded, RateLimited

SOURCES = {"sample": "built-in sample", "upload": "a file of yours"}
STAT_LABELS = {"entropy": "entropy (bits)", "first": "share on the first token", "previous": "share on the previous "
               "token", "self": "share on itself", "distance": "mean attention distance (tokens)",
               **{role: f"{label} score" for role, label in ROLE_LABELS.items()}}
REDUCE = {"mean": "mean over the texts", "spread": "spread (standard deviation) over the texts"}
METHODS = {"pca": "PCA (exact, every token)", "tsne": "t-SNE (openTSNE, up to 4,000 points)"}
COLOURS = {"kind": "query or key", "position": "position in the text"}
SOURCE = Field("corpus.source", "sample", choices=tuple(SOURCES))
STAT = Field("corpus.stat", "previous", choices=tuple(STAT_LABELS))
SPREAD = Field("corpus.reduce", "mean", choices=tuple(REDUCE))
CLUSTERS = Field("corpus.clusters", 6, choices=tuple(range(2, 13)))
METHOD = Field("corpus.projection", "pca", choices=tuple(METHODS))
COLOUR = Field("corpus.colour", "kind", choices=tuple(COLOURS))
FIELDS = (SOURCE, STAT, SPREAD, CLUSTERS, METHOD, COLOUR)
ROLE_MIN = 0.3  # a head's colour in the cluster map: its strongest corpus role reaching this score
UPLOADED, UPLOAD_NOTE, REQUESTED = "corpus_uploaded", "corpus_upload_note", "corpus_requested"
UPLOAD_KEY, MAP_KEY, CLUSTER_KEY, JOINT_KEY = "corpus_file", "corpus_map", "corpus_clusters", "corpus_joint"


def render(ctx: ViewContext) -> None:
    st.subheader("Many texts at once")
    st.caption("A head that puts most of its attention on the previous token in one sentence may do something else "
               "in another. Here every text of a corpus runs through the model and each head's numbers are "
               "averaged over all of them.")
    texts = choose_corpus(ctx)
    if texts is None:
        return
    job = corpus_jobs.job(ctx)
    describe(ctx, texts, job)
    stats = run_job(ctx, texts, job, None, "Compute the head statistics", "corpus_go_stats")
    if stats is None:
        return
    render_maps(ctx, stats)
    render_clusters(ctx, stats)
    render_joint(ctx, texts, job)


# ---- the corpus ------------------------------------------------------------------------------------------------

def choose_corpus(ctx: ViewContext) -> corpus.Corpus | None:
    s = ctx.settings
    source = st.radio("Corpus", SOURCE.choices, index=SOURCE.choices.index(ctx.state.value(SOURCE)),
                      format_func=SOURCES.get, horizontal=True, key="corpus_source")
    state.set_value(SOURCE, source)
    if source == "sample":
        texts = corpus.sample_corpus(min(corpus.sample.N_SENTENCES, s.corpus_max_texts))
        st.caption(f"The built-in sample: {len(texts)} short English sentences written for this app (sixty by hand, "
                   "the rest from word lists with a fixed seed; a third repeat a name or a phrase, so duplicate and "
                   "induction heads have something to find).")
        return texts
    st.file_uploader(f"One text per line: .txt, or .jsonl / .csv with a “text” column; at most "
                     f"{s.corpus_upload_bytes / (1 << 20):.1f} MB and {s.corpus_max_texts:,} texts",
                     type=["txt", "jsonl", "csv"], key=UPLOAD_KEY, on_change=read_upload,
                     args=(s.corpus_upload_bytes, s.corpus_max_texts))
    note = st.session_state.get(UPLOAD_NOTE)
    if note:
        (st.error if note[0] == "error" else st.info)(markdown_literal(note[1]))
    texts = st.session_state.get(UPLOADED)
    if texts is None:
        st.info("Upload a file to see its numbers, or choose the built-in sample.")
        return None
    st.caption(markdown_literal(f"Your corpus “{texts.name}”: {len(texts):,} texts."))
    return texts


def read_upload(max_bytes: int, max_texts: int) -> None:
    """on_change of the uploader: a good file becomes the corpus; a bad one leaves the last corpus as it was."""
    file = st.session_state.get(UPLOAD_KEY)
    if file is None:
        return
    try:
        texts, left_out = corpus.parse(file.getvalue(), file.name, corpus.Limits(max_bytes, max_texts))
    except EngineError as err:
        kept = st.session_state.get(UPLOADED)
        still = f" Still using “{kept.name}”." if kept is not None else ""
        st.session_state[UPLOAD_NOTE] = ("error", f"“{file.name}” was not used: {err}{still}")
        return
    st.session_state[UPLOADED] = texts
    more = f"; the {left_out:,} texts after the first {max_texts:,} were left out" if left_out else ""
    st.session_state[UPLOAD_NOTE] = ("info", f"Read {len(texts):,} texts from “{file.name}”{more}.")


def describe(ctx: ViewContext, texts: corpus.Corpus, job: corpus_jobs.Job) -> None:
    cfg = ctx.model.config
    stats_mb = corpus.stats_bytes(cfg.n_layers, cfg.n_heads, len(texts)) / 1e6
    qk_mb = corpus_jobs.qk_mb(ctx.model, texts, job)
    where = "on the server's Ray cluster" if job.ray_address else "in this server's process"
    st.caption(markdown_literal(
        f"{len(texts):,} texts, each cut to {job.max_tokens} tokens, run {where} in batches of similar length. "
        f"What the job keeps: the statistics of {cfg.n_layers * cfg.n_heads} heads for every text ({stats_mb:.1f} "
        f"MB) and, for one head at a time, the queries and keys of every token (at most {qk_mb:.1f} MB)."))


def run_job(ctx: ViewContext, texts: corpus.Corpus, job: corpus_jobs.Job, head: tuple[int, int] | None,
            label: str, button_key: str):
    """The job's result once asked for (a button), cached afterwards; a progress bar and Cancel while it runs.
    None while not asked for, cancelled or refused (with its reason)."""
    key = corpus_jobs.key(ctx.model, texts, job, head)
    requested = st.session_state.setdefault(REQUESTED, set())
    if key not in requested and not corpus_jobs.cached(ctx, key):
        if st.button(label, key=button_key, type="primary"):
            requested.add(key)
        else:
            return None
    st.button("Cancel", key=f"{button_key}_cancel", on_click=requested.discard, args=(key,),
              help="Stops the job (another visitor waiting for the same job keeps it going).")
    try:
        result = corpus_jobs.get(ctx, texts, job, head)
    except (RateLimited, BudgetExceeded, EngineError) as err:
        requested.discard(key)
        st.error(markdown_literal(f"The corpus job did not run: {err}"))
        return None
    return result


# ---- statistics and clusters -----------------------------------------------------------------------------------

def focus_from(widget_key: str) -> None:
    """on_select of a map or the clusters: focus the clicked head."""
    points = (st.session_state.get(widget_key) or {}).get("selection", {}).get("points", [])
    if not points:
        return
    data = points[0].get("customdata")
    if isinstance(data, list | tuple) and len(data) >= 2:
        state.update(layer=int(data[0]), head=int(data[1]))
    elif points[0].get("x") is not None and points[0].get("y") is not None:
        state.update(layer=int(round(float(points[0]["y"]))), head=int(round(float(points[0]["x"]))))


def render_maps(ctx: ViewContext, stats: corpus.CorpusStats) -> None:
    st.subheader("Each head over the corpus")
    left, right = st.columns([2, 1])
    name = left.selectbox("Statistic", STAT.choices, index=STAT.choices.index(ctx.state.value(STAT)),
                          format_func=STAT_LABELS.get, key="corpus_stat")
    how = right.radio("Show", SPREAD.choices, index=SPREAD.choices.index(ctx.state.value(SPREAD)),
                      format_func=REDUCE.get, key="corpus_reduce")
    state.set_value(STAT, name)
    state.set_value(SPREAD, how)
    values = stats.mean(name) if how == "mean" else stats.spread(name)
    n = stats.n_defined(name)
    title = f"{STAT_LABELS[name]}, {REDUCE[how]} ({n:,} texts)"
    ctx.chart(figures.stat_map_figure(values, title, STAT_LABELS[name], (ctx.layer, ctx.head)), key=MAP_KEY,
              on_select=lambda: focus_from(MAP_KEY), selection_mode="points")
    layer, head = ctx.layer, ctx.head
    st.caption(markdown_literal(
        f"Focused head {layer}.{head} (click a cell to focus another): {STAT_LABELS[name]} "
        f"{stats.mean(name)[layer, head]:.3f} on average, spread {stats.spread(name)[layer, head]:.3f}. Per text, "
        "a statistic is the mean over the text's query positions (previous token: from the second on); the roles "
        "are defined as in the Head roles tab, on the text itself, and duplicate and induction only on texts "
        f"that repeat a token ({stats.n_defined('induction'):,} of {len(stats.n_tokens):,} here)."))


def render_clusters(ctx: ViewContext, stats: corpus.CorpusStats) -> None:
    cfg = ctx.model.config
    st.subheader("Heads that behave alike")
    k = st.select_slider("Clusters", CLUSTERS.choices, value=ctx.state.value(CLUSTERS), key="corpus_k")
    state.set_value(CLUSTERS, k)
    groups = cluster_heads({f: stats.mean(f) for f in FEATURES}, k)
    role_scores = {role: stats.mean(role) for role in ROLES}
    best, score = strongest_roles(role_scores, ROLE_MIN)
    role = [ROLES[r] if r >= 0 else None for r in best.ravel()]
    hover = [plotly_escape(f"head {i // cfg.n_heads}.{i % cfg.n_heads}, cluster {groups.cluster[i]}"
                           f"{f', {ROLE_LABELS[role[i]]} {score.ravel()[i]:.2f}' if role[i] else ''}")
             for i in range(len(role))]
    ctx.chart(figures.cluster_figure(groups.xy, groups.cluster, role, ROLE_LABELS, cfg.n_heads,
                                     (ctx.layer, ctx.head), hover, groups.explained),
              key=CLUSTER_KEY, on_select=lambda: focus_from(CLUSTER_KEY), selection_mode="points")
    mine = groups.cluster[ctx.layer * cfg.n_heads + ctx.head]
    same = [f"{i // cfg.n_heads}.{i % cfg.n_heads}" for i in np.flatnonzero(groups.cluster == mine)]
    st.caption(markdown_literal(
        f"Each point is a head, placed by a PCA of its corpus means ({', '.join(FEATURES)}; each standardised "
        f"across heads); the number is its cluster (Ward's clustering of the same numbers into {k}); the colour its "
        f"strongest role where the corpus score reaches {ROLE_MIN}. Head {ctx.layer}.{ctx.head} is in cluster {mine} "
        f"with {len(same) - 1} other heads: {', '.join(same[:40])}{' …' if len(same) > 40 else ''}."))
    ctx.table(cluster_table(groups, k), hide_index=True, key="corpus_cluster_table")


def cluster_table(groups, k: int) -> pd.DataFrame:
    """One row per cluster: its size and the mean of each feature over its heads."""
    rows = []
    for c in range(1, k + 1):
        members = groups.cluster == c
        rows.append({"cluster": c, "heads": int(members.sum()),
                     **{STAT_LABELS[f]: float(groups.features[members, i].mean()) if members.any() else np.nan
                        for i, f in enumerate(FEATURES)}})
    return pd.DataFrame(rows)


# ---- the joint query–key map -----------------------------------------------------------------------------------

def render_joint(ctx: ViewContext, texts: corpus.Corpus, job: corpus_jobs.Job) -> None:
    layer, head = ctx.layer, ctx.head
    st.subheader(f"Queries and keys of head {layer}.{head} over the corpus")
    st.caption("Every token's query and key of the focused head, in one space (AttentionViz, Yeh et al. 2023): the "
               "queries are scaled by c and the keys by 1/c so that their mean lengths match, and the keys are "
               "moved so that their centre is the queries' centre. Neither changes the head's pattern (c·q · k/c "
               "= q·k, and moving the keys adds the same amount to every score of a query). A query near a key "
               "attends to it.")
    joint = run_job(ctx, texts, job, (layer, head), f"Compute the joint map of head {layer}.{head}",
                    "corpus_go_joint")
    if joint is None:
        return
    left, right = st.columns(2)
    method = left.radio("Projection", METHOD.choices, index=METHOD.choices.index(ctx.state.value(METHOD)),
                        format_func=METHODS.get, key="corpus_method", horizontal=True)
    colour = right.radio("Colour", COLOUR.choices, index=COLOUR.choices.index(ctx.state.value(COLOUR)),
                         format_func=COLOURS.get, key="corpus_colour", horizontal=True)
    state.set_value(METHOD, method)
    state.set_value(COLOUR, colour)
    placed = corpus_jobs.placed(ctx, texts, job, joint, method)
    n = len(joint.q)
    rows = placed.rows  # rows of [queries; keys]
    is_key = rows >= n
    token = rows % n
    hover = corpus_jobs.hover_lines(ctx.model, texts, job, joint)
    axes = (("PC 1", "PC 2") if method == "pca" else ("t-SNE 1", "t-SNE 2"))
    if method == "pca":
        axes = (f"PC 1 ({placed.explained[0]:.0%})", f"PC 2 ({placed.explained[1]:.0%})")
    fig = figures.joint_figure(placed.xy, is_key, None if colour == "kind" else joint.position[token].astype(float),
                               COLOURS[colour], [hover[i] for i in token],
                               np.stack([joint.text[token], joint.position[token]], 1),
                               f"head {layer}.{head}: {n:,} queries and {n:,} keys", axes)
    ctx.chart(fig, key=JOINT_KEY, on_select=lambda: open_text(texts), selection_mode="points")
    sampled = f" (a sample of {len(rows):,} of the {2 * n:,} points, fixed by a seed)" if len(rows) < 2 * n else ""
    st.caption(markdown_literal(
        f"{n:,} tokens of {len(texts):,} texts{sampled}; scale c = {joint_scale(joint):.3f}. Click a point to open "
        "its text in the other tabs (the sidebar's sentence becomes it), or choose a text here:"))
    left, right = st.columns([3, 1])
    left.selectbox("Text", range(len(texts)), key="corpus_text",
                   format_func=lambda i: f"{i + 1}: {token_text(texts.texts[i])[:100]}")
    right.button("Open it in the other tabs", key="corpus_open",
                 on_click=lambda: open_text_id(texts, int(st.session_state.get("corpus_text") or 0)))


def joint_scale(joint: corpus.JointQK) -> float:
    return corpus.normalise(joint.q, joint.k).scale


def open_text(texts: corpus.Corpus) -> None:
    """on_select of the joint map: the clicked token's text becomes the app's sentence."""
    points = (st.session_state.get(JOINT_KEY) or {}).get("selection", {}).get("points", [])
    if not points or not isinstance(points[0].get("customdata"), list | tuple):
        return
    open_text_id(texts, int(points[0]["customdata"][0]))


def open_text_id(texts: corpus.Corpus, text_id: int) -> None:
    """Make text `text_id` of the corpus the app's sentence (every other tab shows it)."""
    if 0 <= text_id < len(texts):
        state.update(text=texts.texts[text_id])
        st.toast(markdown_literal(f"Opened text {text_id + 1}: {token_text(texts.texts[text_id])[:80]}"))
