"""The Corpus view's jobs through the server's shared runs (engine/serving/corpus.py): the job's settings from the
operator's, a progress bar with the texts done and the time left while it runs, and what the view derives from a
result (the projected joint map, the hover text of every token), cached per result."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
import streamlit as st

import engine
from components import runs, state
from components.labels import plotly_escape, token_text
from components.views.context import ViewContext
from components.waiting import describe
from engine import corpus
from engine.serving import corpus as serving
from engine.serving.cache import Waiting

Job = serving.Job
HOVER_CONTEXT = 6  # tokens shown on each side of the hovered one


@st.cache_resource(show_spinner=False)
def progress() -> serving.Progress:
    return serving.Progress()


def job(ctx: ViewContext) -> Job:
    s = ctx.settings
    options = tuple(sorted(s.load_options().items()))
    return Job(max_tokens=min(s.corpus_max_tokens, s.max_tokens), ray_address=s.ray_address,
               model_name=ctx.state.model, load_options=options)


def key(model: engine.Model, texts: corpus.Corpus, job: Job, head: tuple[int, int] | None) -> Hashable:
    return serving.key_of(model, texts, job, head)


def _cache(ctx: ViewContext):
    s = ctx.settings
    return runs.run_cache(s.memory_mb, s.trace_cache_entries, s.runs_per_minute)


def cached(ctx: ViewContext, job_key: Hashable) -> bool:
    return _cache(ctx).peek(job_key) is not None


def qk_mb(model: engine.Model, texts: corpus.Corpus, job: Job) -> float:
    n_tokens = sum(min(len(t) + 8, job.max_tokens) for t in texts.texts)
    return corpus.qk_bytes(model.config.d_head, n_tokens) / 1e6


def get(ctx: ViewContext, texts: corpus.Corpus, job: Job, head: tuple[int, int] | None):
    """The job's result; while it queues or runs, the queue or a progress bar (texts done, time left)."""
    slot = st.empty()

    def on_wait(w: Waiting, done: serving.Done | None) -> None:
        if w.state == "queued" or done is None:
            slot.info(describe(w))
            return
        left = done.seconds_left
        eta = f", about {left:.0f} s left" if left is not None else ""
        shared = " (another visitor asked for the same job: it is shared)" if w.shared else ""
        slot.progress(done.texts / max(done.total, 1),
                      text=f"{done.texts:,} of {done.total:,} texts done, {done.seconds:.0f} s{eta}{shared}")

    try:
        return serving.get(_cache(ctx), progress(), ctx.model, texts, job, head, session=state.session_id(),
                           on_wait=on_wait)
    finally:
        slot.empty()


@dataclass(frozen=True)
class Placed:
    xy: np.ndarray  # [n, 2]
    rows: np.ndarray  # [n], rows of [normalised queries; normalised keys]
    explained: np.ndarray  # [2] (PCA) or NaN


@st.cache_resource(max_entries=8, show_spinner="Placing the points…")
def _placed(job_key: Hashable, method: str, _joint: corpus.JointQK) -> Placed:
    norm = corpus.normalise(_joint.q, _joint.k)
    xy, rows, explained = corpus.project(np.concatenate([norm.q, norm.k]), method)
    return Placed(xy, rows, explained)


def placed(ctx: ViewContext, texts: corpus.Corpus, job: Job, joint: corpus.JointQK, method: str) -> Placed:
    return _placed(key(ctx.model, texts, job, (joint.layer, joint.head)), method, joint)


@st.cache_resource(max_entries=8, show_spinner=False)
def _hover(job_key: Hashable, _model: engine.Model, _joint: corpus.JointQK) -> list[str]:
    lines = []
    starts = np.flatnonzero(np.r_[True, _joint.text[1:] != _joint.text[:-1]])
    ends = np.r_[starts[1:], len(_joint.text)]
    for start, end in zip(starts, ends, strict=True):
        tokens = [token_text(t) for t in _model.readable(_joint.token_id[start:end].tolist())]
        text_id = int(_joint.text[start])
        for p in range(len(tokens)):
            before = "".join(tokens[max(0, p - HOVER_CONTEXT): p])
            after = "".join(tokens[p + 1: p + 1 + HOVER_CONTEXT])
            lines.append(plotly_escape(f"“{tokens[p]}” (text {text_id + 1}, position {p}): …{before}[{tokens[p]}]"
                                       f"{after}…"))
    return lines


def hover_lines(model: engine.Model, texts: corpus.Corpus, job: Job, joint: corpus.JointQK) -> list[str]:
    """One literal line per token of the joint map: the token, its text and position, and the tokens around it."""
    return _hover(key(model, texts, job, (joint.layer, joint.head)), model, joint)


