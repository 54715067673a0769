"""Tab "Generate": the model writes after the sidebar's sentence, token by token (a progress bar and the text so far
while it writes). A step slider then shows, for each new token, the attention row that wrote it (the sidebar's layer
and head, and every head's row at once), the predictions at that step with the chosen token marked, and the full
pattern over prompt + written tokens. With heads switched off, the unmodified continuation is written too and shown
beside, with the first step where they part. The settings and the step are kept in the link.

Opening the tab writes at once with the settings in the state (32 greedy tokens take a few seconds on a CPU, and
each text is cached), so a shared link shows the same text without a click; the form's "Generate" button applies
changed settings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import streamlit as st

import engine
from components import runs, state
from components.derived import per_trace
from components.figures import generate as figures
from components.labels import markdown_literal, readable_text, token_text
from components.state import AppState, Field
from components.views.context import ViewContext
from components.waiting import show_writing
from components.widgets import keep_valid
from engine.arrays import readonly
from engine.generate import Generation, Step
from engine.serving.generation import GenerateSettings

NEW = Field("generate.new", 32)
SAMPLE = Field("generate.sample", False)
TEMPERATURE = Field("generate.temperature", 1.0)
TOP_K = Field("generate.top_k", 50)
SEED = Field("generate.seed", 0)
STEP = Field("generate.step", 1)  # the step shown, from 1
FIELDS = (NEW, SAMPLE, TEMPERATURE, TOP_K, SEED, STEP)
MODES = {False: "greedy: always the most likely token", True: "sampling: temperature, top-k, seed"}
MAX_NEW, MAX_TEMPERATURE, MAX_SEED = 256, 5.0, 2**31 - 1  # the form's bounds (the engine checks any value)
WIDGETS = {NEW: "generate_new", SAMPLE: "generate_sample", TEMPERATURE: "generate_temperature", TOP_K: "generate_top_k",
           SEED: "generate_seed"}
STEP_KEY, LAST_GOOD = "generate_step", "generate_last_good"


def settings_of(s: AppState) -> GenerateSettings:
    """What the state asks the model to write; greedy ignores temperature, top-k and seed."""
    if not s.value(SAMPLE):
        return GenerateSettings(s.value(NEW))
    return GenerateSettings(s.value(NEW), s.value(TEMPERATURE), s.value(TOP_K), s.value(SEED))


def first_parting(a: Sequence[Step], b: Sequence[Step]) -> int | None:
    """The first step (from 1) where two continuations differ, one stopping earlier included; None if they agree."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x.token_id != y.token_id:
            return i + 1
    return None if len(a) == len(b) else min(len(a), len(b)) + 1


def apply_form() -> None:
    """on_click of "Generate": the form's values become the state (and so the link)."""
    s = st.session_state
    state.set_value(NEW, int(s[WIDGETS[NEW]]))
    state.set_value(SAMPLE, bool(s[WIDGETS[SAMPLE]]))
    state.set_value(TEMPERATURE, round(float(s[WIDGETS[TEMPERATURE]]), 3))
    state.set_value(TOP_K, int(s[WIDGETS[TOP_K]]))
    state.set_value(SEED, int(s[WIDGETS[SEED]]))


def controls(ctx: ViewContext) -> None:
    """The settings form; its widgets start from the state, a value out of their range shown at the nearest bound
    (the state keeps it, and the engine says what is wrong with it)."""
    s, vocab = ctx.state, ctx.model.config.d_vocab

    def start(f: Field, low: float, high: float) -> float:
        return min(max(s.value(f), low), high)

    with st.form("generate_form", border=False):
        new, mode, temperature, top_k, seed = st.columns([1, 2, 1, 1, 1])
        new.number_input("new tokens", 1, MAX_NEW, int(start(NEW, 1, MAX_NEW)), key=WIDGETS[NEW])
        mode.radio("choosing each token", list(MODES), index=int(bool(s.value(SAMPLE))), format_func=MODES.get,
                   key=WIDGETS[SAMPLE])
        temperature.number_input("temperature", 0.0, MAX_TEMPERATURE, float(start(TEMPERATURE, 0.0, MAX_TEMPERATURE)),
                                 step=0.1, key=WIDGETS[TEMPERATURE], help="sampling only; 0 = greedy")
        top_k.number_input("top-k", 1, vocab, int(start(TOP_K, 1, vocab)), key=WIDGETS[TOP_K],
                           help=f"sampling only: draw from the k most likely tokens ({vocab:,} = all of them)")
        seed.number_input("seed", 0, MAX_SEED, int(start(SEED, 0, MAX_SEED)), key=WIDGETS[SEED],
                          help="sampling only: the same seed writes the same text")
        st.form_submit_button("Generate", type="primary", on_click=apply_form, key="generate_go")


def toggle_head(ctx: ViewContext) -> None:
    """A button that switches the sidebar's head off (or on again): the text is then written beside the unmodified
    one. The Interventions tab switches any head."""
    layer, head, off = ctx.layer, ctx.head, ctx.state.heads_off
    label = f"Switch head {layer}.{head} {'on' if (layer, head) in off else 'off'}"
    st.button(label, key="generate_toggle_head", on_click=state.update, kwargs={"heads_off": off ^ {(layer, head)}},
              help="the sidebar's layer and head; the Interventions tab switches any head")


def generation(ctx: ViewContext, text: str, request: GenerateSettings, heads_off: frozenset[tuple[int, int]],
               what: str) -> Generation:
    """One generation through the server's shared runs; while it is written, a progress bar and the text so far."""
    model = ctx.model

    def prompt() -> str:
        return "".join(model.readable(model.tokenize(text, ctx.settings.max_tokens)[0]))

    with show_writing(what, prompt, request.new_tokens, model.readable) as on_wait:
        return runs.get_generation(model, text, request, heads_off, ctx.settings, on_wait)


def write(ctx: ViewContext, text: str, request: GenerateSettings,
          heads_off: frozenset[tuple[int, int]]) -> tuple[Generation, Generation | None]:
    """The generation the state asks for and, with heads switched off, the unmodified one."""
    gen = generation(ctx, text, request, heads_off, "Writing")
    base = generation(ctx, text, request, frozenset(), "Writing the unmodified continuation") if heads_off else None
    return gen, base


def render(ctx: ViewContext) -> None:
    cfg = ctx.model.config
    st.subheader("Generate: watch the model write")
    if not cfg.causal or not cfg.has_lm_head:
        st.info(f"{markdown_literal(cfg.name)} is an encoder: it reads the whole sentence at once, in both "
                "directions, and has no next-token head, so it cannot write text. Pick SmolLM2 in the sidebar to "
                "watch a model write.")
        return
    st.caption("The prompt is the sentence in the sidebar. The model writes one token at a time; each new token "
               "attends to everything before it. Opening this tab writes with the settings below; change them and "
               "press Generate. The link keeps them: greedy, or sampling with a seed, writes the same text again.")
    controls(ctx)
    toggle_head(ctx)
    asked = (state.last_good_text() or ctx.state.text, settings_of(ctx.state), ctx.state.heads_off)
    try:
        gen, base = write(ctx, *asked)
        st.session_state[LAST_GOOD] = asked
    except engine.EngineError as err:
        st.error(markdown_literal(f"Could not write: {err}"))
        last = st.session_state.get(LAST_GOOD)
        if last is None or last == asked:
            return
        st.caption("Showing the last text written.")
        try:
            gen, base = write(ctx, *last)
        except engine.EngineError:
            return
        asked = last
    show(ctx, gen, base, asked[1])


def show(ctx: ViewContext, gen: Generation, base: Generation | None, request: GenerateSettings) -> None:
    """A finished generation: its text (beside the unmodified one), then the chosen step in detail."""
    if gen.truncated:
        st.info(f"The prompt was cut to its first {gen.n_prompt:,} tokens to leave room within the limit.")
    if ctx.state.mask == "none":
        st.info("A model writes left to right, so generation always uses the causal mask (the sidebar's mask "
                "applies to the other tabs).")
    how = "greedy" if request.temperature == 0 else (
        f"sampled at temperature {request.temperature:g}, top-k {request.top_k}, seed {request.seed}")
    ended = ", then the end-of-text token stopped it" if gen.stopped_at_eos else ""
    st.caption(f"{len(gen.steps)} tokens written ({how}){ended}.")
    if base is None:
        with st.container(key="generate_prompt"):
            st.caption(f"Prompt · {gen.n_prompt} tokens")
            st.code(readable_text("".join(gen.tokens[: gen.n_prompt])), language=None, wrap_lines=True)
        with st.container(key="generate_text"):
            st.caption("Written")
            st.code(readable_text("".join(gen.tokens[gen.n_prompt:])), language=None, wrap_lines=True)
    else:
        compare(ctx, gen, base)
    step = choose_step(ctx, gen)
    step_panel(ctx, gen, step)


def compare(ctx: ViewContext, gen: Generation, base: Generation) -> None:
    """The unmodified continuation beside the one with heads off, and the first step where they part."""
    prompt = readable_text("".join(gen.tokens[: gen.n_prompt]))
    left, right = st.columns(2)
    for column, key, title, g in ((left, "generate_base_text", "Unmodified", base),
                                  (right, "generate_text", f"With {len(ctx.state.heads_off)} head(s) off", gen)):
        with column, st.container(key=key):
            st.caption(title)
            st.code(prompt + readable_text("".join(g.tokens[g.n_prompt:])), language=None, wrap_lines=True)
    parting = first_parting(base.steps, gen.steps)
    if parting is None:
        st.info(f"Switching those heads off did not change the {len(gen.steps)} tokens written.")
        return
    before, after = (g.steps[parting - 1] if parting <= len(g.steps) else None for g in (base, gen))
    st.markdown(f"**They part at step {parting}**: the unmodified model wrote {said(before)}, with the heads off "
                f"{said(after)}.")
    ctx.chart(figures.continuations_figure(base.steps, gen.steps, parting), key="generate_parting_fig")
    st.button(f"Show step {parting}", key="generate_go_parting", on_click=go_to_step, args=(parting,))


def said(step: Step | None) -> str:
    """“token” (probability), for a sentence; a run that had stopped wrote nothing more."""
    if step is None:
        return "nothing more (it had stopped at the end-of-text token)"
    return f"“{markdown_literal(token_text(step.token))}” ({step.prob:.1%})"


def go_to_step(step: int) -> None:
    """on_click of "Show step k": the slider and the state move to that step."""
    st.session_state[STEP_KEY] = step
    state.set_value(STEP, step)


def choose_step(ctx: ViewContext, gen: Generation) -> int:
    """The step slider (from 1); the state keeps the step."""
    n = len(gen.steps)
    default = min(max(ctx.state.value(STEP), 1), n)
    if n == 1:
        step = 1
    else:
        has = keep_valid(STEP_KEY, lambda v: isinstance(v, int) and 1 <= v <= n, default)
        step = st.slider("step", 1, n, key=STEP_KEY, **({} if has else {"value": default}))
    state.set_value(STEP, step)
    return step


def step_panel(ctx: ViewContext, gen: Generation, step: int) -> None:
    """The chosen step: the attention row that wrote it (this head, then every head), the predictions, the pattern."""
    layer, head, trace = ctx.layer, ctx.head, gen.trace
    chosen = gen.steps[step - 1]
    query = chosen.position - 1  # the last token when this step was written: its output predicted the new token
    with st.container(key="generate_step_summary"):
        st.markdown(f"Step {step} of {len(gen.steps)} wrote “{markdown_literal(token_text(chosen.token))}” at "
                    f"position {chosen.position}, probability {chosen.prob:.2%}. It was predicted at position "
                    f"{query}, “{markdown_literal(token_text(gen.tokens[query]))}”, whose attention reads keys 0 to "
                    f"{query}.")
    if not bool(trace.head_mask[layer, head]):
        st.warning(f"Head {layer}.{head} is switched off: its pattern is computed but it adds nothing (Δe = 0).")
    left, right = st.columns(2)
    with left:
        st.subheader(f"Attention row · layer {layer}, head {head}")
        st.caption(f"query {query} over keys 0 to {query}; blue keys are the prompt, orange ones were written")
        ctx.chart(per_trace(row_view, trace, gen.n_prompt, layer, head, query), key="generate_row_fig")
    with right:
        st.subheader(f"Predictions at step {step}")
        st.caption("the model's probabilities (temperature 1) for the next token; the chosen one is marked ◀")
        ctx.chart(figures.step_prediction_figure(chosen.top, (chosen.token_id, chosen.token, chosen.prob)),
                  key="generate_pred_fig")
    st.subheader("Every head's row for this query")
    st.caption("One strip per head (layers down, heads across), keys from the first token (left) to the query "
               "(right), max-pooled to at most 64 pixels; hover for a head's strongest key. Switched-off heads are "
               "crossed out.")
    ctx.chart(per_trace(heads_view, trace, query, (layer, head)), key="generate_heads_fig")
    st.subheader(f"The whole pattern · layer {layer}, head {head}")
    st.caption("prompt and written tokens; the dashed lines mark where the written part begins on both axes, the "
               "red box this step's query")
    ctx.chart(per_trace(pattern_view, trace, gen.n_prompt, layer, head, query, ctx.state.layout),
              key="generate_pattern_fig")


def row_view(trace: engine.Trace, n_prompt: int, layer: int, head: int, query: int) -> go.Figure:
    """One head's attention row of `query` over keys 0..query (cached per trace)."""
    weights = trace.pattern_rows(layer, slice(query, query + 1), head)[0, : query + 1]  # [query + 1]
    return figures.attention_row_figure(weights.float().cpu().numpy(), trace.tokens[: query + 1], n_prompt)


def heads_view(trace: engine.Trace, query: int, selected: tuple[int, int]) -> go.Figure:
    """Every head's attention row of `query`, one image (cached per trace)."""
    rows = np.stack([trace.pattern_rows(layer, slice(query, query + 1))[:, 0, : query + 1].float().cpu().numpy()
                     for layer in range(trace.config.n_layers)])  # [n_layers, n_heads, query + 1]
    return figures.heads_row_figure(rows, trace.tokens[: query + 1], selected=selected,
                                    disabled=~trace.head_mask.numpy())


def pattern_view(trace: engine.Trace, n_prompt: int, layer: int, head: int, query: int, layout: str) -> go.Figure:
    """One head's whole pattern, the written part and the query marked (cached per trace)."""
    return figures.marked_pattern_figure(readonly(trace["pattern", layer, head]), trace.tokens, n_prompt, query,
                                         layout=layout)
