"""Tab "Follow the notes": the explanation of attention walked step by step (tokens, embeddings, one query, the keys,
dot products, mask, softmax, values, Δe, many heads, the next token, how big it is) on the sidebar's sentence,
model, layer and head, with that run's numbers. The step is in the link (`?tab=notes&notes.step=5`), so a teacher
can send a link to one step; every step has a button that opens the matching instrument tab with the same state."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import streamlit as st

from components import content, state
from components.figures.deltas import delta_sum_figure, lens_tables
from components.figures.notes import change_figure, layers_figure, sampling_figure, strips_figure
from components.figures.params import share_figure
from components.figures.pattern import pattern_figure, scores_figure
from components.labels import markdown_literal, plotly_escape, token_labels, token_text
from components.state import Field
from components.views.context import ViewContext
from components.widgets import last_word_token, select
from engine.analysis import deltas, lens, notes, params


@dataclass(frozen=True)
class Step:
    title: str
    tab: str  # the instrument tab that shows this in full (a view id)
    draw: Callable[[ViewContext, int, tuple[int, int]], None]  # (ctx, chosen token, window)


STEP = Field("notes.step", 1, choices=tuple(range(1, 13)))  # 1-based, as a teacher names it
TOKEN = Field("notes.token", -1)  # the chosen token's position; -1 = the last word
FIELDS = (STEP, TOKEN)
TABLE, VECTOR = "notes_numbers", "notes_vector"  # keys of a step's tables of numbers (tests read them)
# widget keys of other tabs that hold a chosen token: "explore" carries the notes' token there
TOKEN_WIDGETS = ("qk_query", "deltas_token", "projections_query")


def _tok(tokens, i: int) -> str:
    return markdown_literal(f"“{token_text(tokens[i])}”")


def _say(text: str) -> None:
    st.markdown(text)


def _names(tokens, lo: int, hi: int) -> list[str]:
    return [f"{i}: {label}" for i, label in zip(range(lo, hi), token_labels(tokens[lo:hi], max_chars=16), strict=True)]


def _window_note(ctx: ViewContext, lo: int, hi: int) -> None:
    if hi - lo < ctx.trace.n_tokens:
        st.caption(f"The text has {ctx.trace.n_tokens:,} tokens: the figure shows positions {lo}–{hi - 1} around the "
                   "chosen token; the instrument tabs show the whole text.")


def _now(ctx: ViewContext) -> state.AppState:
    """The state now, with what this run's widgets changed (the token)."""
    return state.current(ctx.schema)


# ---- the twelve steps --------------------------------------------------------------------------------------------

def step_tokens(ctx: ViewContext, token: int, win: tuple[int, int]) -> None:
    trace, lo, hi = ctx.trace, *win
    special = ctx.model.special_ids
    n_special = sum(i in special for i in trace.token_ids)
    _say(f"The model does not read letters or words: its tokenizer cuts the sentence into **{trace.n_tokens} tokens**, "
         f"pieces from a vocabulary of {ctx.model.config.d_vocab:,}, and each piece has a number, its id. "
         "Everything that follows works on these pieces, one vector per token."
         + (f" {n_special} of them are special tokens the model adds itself." if n_special else ""))
    table = pd.DataFrame({"position": range(lo, hi), "token": [token_text(t) for t in trace.tokens[lo:hi]],
                          "id": trace.token_ids[lo:hi]})
    ctx.table(table, hide_index=True, key=TABLE)


def step_embeddings(ctx: ViewContext, token: int, win: tuple[int, int]) -> None:
    trace, cfg, (lo, hi) = ctx.trace, ctx.model.config, win
    other = int(select("Compare with the token", list(range(trace.n_tokens)), "notes_other",
                       max(token - 1, 0) if token else min(1, trace.n_tokens - 1),
                       format_func=lambda i: f"{i}: {token_text(trace.tokens[i])}"))
    e = notes.embeddings(trace, token, other, lo, hi)
    if cfg.positions == "rotary":
        where = ("This model's embedding is the token's row of W_E alone: it holds **no position**. Position enters "
                 "later, inside every head, by rotating the query and the key (rotary positions).")
    else:
        where = ("Here it is the token's row of W_E plus a learned position vector (W_pos)"
                 + (" and a segment vector, then a LayerNorm" if cfg.n_token_types else "") + ": meaning and position "
                 "in one vector.")
    _say(f"Each token starts as a vector of **d_model = {cfg.d_model}** numbers, its embedding. {where} "
         "Vectors of related tokens can point in similar directions: the cosine similarity of "
         f"{_tok(trace.tokens, token)} and {_tok(trace.tokens, other)} is **{e.similarity:.3f}**.")
    ctx.chart(strips_figure(e.vectors, _names(trace.tokens, lo, hi), highlight=token - lo,
                            title=f"Embeddings entering block 0: one row per token, {cfg.d_model} numbers each",
                            x_title="dimension of d_model"), key="notes_fig")
    ctx.table(pd.DataFrame({"position": range(lo, hi), "token": [token_text(t) for t in trace.tokens[lo:hi]],
                            "‖e‖": e.norms}), hide_index=True, key=TABLE)


def step_query(ctx: ViewContext, token: int, win: tuple[int, int]) -> None:
    trace, cfg, layer, head = ctx.trace, ctx.model.config, ctx.layer, ctx.head
    q = notes.query(ctx.model, trace, layer, head, token)
    d_model, d_head = q.W_Q_shape
    normed = ("after the block's norm" if cfg.norm_placement == "pre"
              else "as the block receives it (this model normalises after each sum instead)")
    _say(f"A head asks a question for each token. Its matrix `W_Q` (layer {layer}, head {head}: "
         f"[{d_model} × {d_head}]) maps the chosen token {_tok(trace.tokens, token)}'s vector ({normed}) down to "
         f"a **query** of d_head = {d_head} numbers: [1 × {d_model}] · [{d_model} × {d_head}] = [1 × {d_head}]. "
         + ("Then the query is rotated by an angle that depends on the token's position: this is where position "
            "enters (rotary positions)." if q.rotary else "The query encodes what this token is looking for."))
    rows = np.stack([q.q_linear, q.q]) if q.rotary else q.q[None, :]
    names = ["x · W_Q (before rotary)", "q (after rotary)"] if q.rotary else ["q = x · W_Q + b_Q"]
    ctx.chart(strips_figure(rows, names, x_title="dimension of d_head",
                            title=f"The query of {plotly_escape(token_text(trace.tokens[token]))}, "
                                  f"layer {layer}, head {head}"), key="notes_fig")
    data = {"i": range(d_head), "x·W_Q (before rotary)": q.q_linear, "q": q.q} if q.rotary else \
        {"i": range(d_head), "q": q.q}
    ctx.table(pd.DataFrame(data), hide_index=True, key=TABLE)


def step_keys(ctx: ViewContext, token: int, win: tuple[int, int]) -> None:
    trace, cfg, layer, head, (lo, hi) = ctx.trace, ctx.model.config, ctx.layer, ctx.head, win
    keys = trace["k", layer, head][lo:hi].cpu().numpy()  # [w, d_head]
    q = trace["q", layer, head][token].cpu().numpy()  # [d_head]
    kv = head // cfg.kv_group
    others = ", ".join(str(h) for h in range(kv * cfg.kv_group, (kv + 1) * cfg.kv_group) if h != head)
    shared = (f" In {markdown_literal(cfg.name)} key matrices are shared: each key/value head serves "
              f"{cfg.kv_group} query heads, so head {head} reads the keys of key/value head {kv}, the same keys as "
              f"heads {others}." if cfg.kv_group > 1 else "")
    _say(f"A second matrix `W_K` [{cfg.d_model} × {cfg.d_head}] does the same for **every** token: each gets a "
         f"**key** of {cfg.d_head} numbers, a possible answer. The question is: which keys answer the query of "
         f"{_tok(trace.tokens, token)}? A key that points the same way as the query answers it." + shared)
    names = [f"q of {token}"] + [f"k of {n}" for n in _names(trace.tokens, lo, hi)]
    ctx.chart(strips_figure(np.concatenate([q[None, :], keys]), names, highlight=0, x_title="dimension of d_head",
                            title=f"The query (top) and every token's key, layer {layer}, head {head}"),
              key="notes_fig")
    _window_note(ctx, lo, hi)
    ctx.table(pd.DataFrame(keys, index=pd.Index(range(lo, hi), name="key position")), key=TABLE)


def step_dots(ctx: ViewContext, token: int, win: tuple[int, int]) -> None:
    trace, layer, head, (lo, hi) = ctx.trace, ctx.layer, ctx.head, win
    g = notes.grid(trace, layer, head, token, lo, hi)
    root = np.sqrt(g.d_head)
    _say(f"The dot product q·k of a query with a key is large when they point the same way. Doing it for "
         f"**every pair** gives a grid: one row per query, one column per key (the notes draw it turned, keys as "
         f"rows; the sidebar's layout switches). The numbers are divided by √d_head = √{g.d_head} = {root:.2f} "
         "to keep them in a range where the next step works well. The chosen query's row is framed.")
    tokens = trace.tokens[lo:hi]
    fig = scores_figure(g.scores, np.zeros_like(g.masked), tokens, layout=ctx.state.layout, offset=lo,
                        title=f"q·k / √{g.d_head} for every pair (before any mask), layer {layer}, head {head}")
    ctx.chart(_frame_query(fig, token, lo, hi, ctx.state.layout), key="notes_fig")
    _window_note(ctx, lo, hi)
    ctx.table(pd.DataFrame({"key": range(lo, hi), "token": [token_text(t) for t in tokens],
                            "q·k": g.dots[token - lo], f"q·k / √{g.d_head}": g.scores[token - lo]}),
              hide_index=True, key=TABLE)


def _frame_query(fig, token: int, lo: int, hi: int, layout: str):
    """Frame the chosen query's row (query rows) or column (the notes' key rows)."""
    across = dict(x0=lo - 0.5, x1=hi - 0.5, y0=token - 0.5, y1=token + 0.5) if layout == "query_rows" else \
        dict(y0=lo - 0.5, y1=hi - 0.5, x0=token - 0.5, x1=token + 0.5)
    fig.add_shape(type="rect", xref="x", yref="y", line=dict(color="black", width=2), **across)
    return fig


def step_mask(ctx: ViewContext, token: int, win: tuple[int, int]) -> None:
    trace, layer, head, (lo, hi) = ctx.trace, ctx.layer, ctx.head, win
    g = notes.grid(trace, layer, head, token, lo, hi)
    tokens = trace.tokens[lo:hi]
    if trace.causal:
        _say("A model that learns to predict the next word must not peek: while training, each token would "
             "otherwise see the words after it and **give the answer away**. So every entry where a query would "
             "look at a later key is set to **−∞** before the softmax, which turns it into a weight of exactly 0. "
             f"Here {int(g.row_masked.sum())} of the {trace.n_tokens} keys are hidden from "
             f"{_tok(trace.tokens, token)}.")
        off = st.toggle("Show the grid without the mask", key="notes_unmask")
    else:
        _say(f"{markdown_literal(ctx.model.config.name)} is **bidirectional**"
             + (" (an encoder, like BERT)" if not ctx.model.config.causal else " in this run (mask: none)")
             + ": every token sees every other, before and after it, so **nothing is masked** here. A model that "
               "predicts the next word sets the entries of later keys to −∞ so it cannot peek at the answer.")
        off = True
    masked = np.zeros_like(g.masked) if off else g.masked
    fig = scores_figure(g.scores, masked, tokens, layout=ctx.state.layout, offset=lo,
                        title=f"q·k / √d_head {'without the mask' if off else 'with the mask: grey = −∞'}")
    ctx.chart(_frame_query(fig, token, lo, hi, ctx.state.layout), key="notes_fig")
    _window_note(ctx, lo, hi)
    after = np.where(g.masked[token - lo], -np.inf, g.scores[token - lo])
    ctx.table(pd.DataFrame({"key": range(lo, hi), "token": [token_text(t) for t in tokens],
                            "q·k / √d_head": g.scores[token - lo], "after the mask": after}),
              hide_index=True, key=TABLE)


def step_softmax(ctx: ViewContext, token: int, win: tuple[int, int]) -> None:
    trace, layer, head, (lo, hi) = ctx.trace, ctx.layer, ctx.head, win
    g = notes.grid(trace, layer, head, token, lo, hi)
    n = trace.n_tokens
    top = int(np.argmax(g.row_weights))
    _say("The softmax turns each query's scores into **weights between 0 and 1 that sum to 1**: "
         f"exp(score) / Σ exp(score). For {_tok(trace.tokens, token)} they sum to {g.row_weights.sum():.6f}; "
         "the largest, "
         f"{g.row_weights[top]:.3f}, goes to {_tok(trace.tokens, top)}. This grid is the **attention pattern**; it has "
         f"{n} × {n} = {g.n_entries:,} entries, the context size squared, which is why long contexts are costly.")
    fig = pattern_figure(g.pattern, trace.tokens[lo:hi], layout=ctx.state.layout, offset=lo,
                         title=f"The attention pattern, layer {layer}, head {head}")
    ctx.chart(_frame_query(fig, token, lo, hi, ctx.state.layout), key="notes_fig")
    _window_note(ctx, lo, hi)
    ctx.table(pd.DataFrame({"key": range(lo, hi), "token": [token_text(t) for t in trace.tokens[lo:hi]],
                            "after the mask": np.where(g.row_masked[lo:hi], -np.inf, g.row_scores[lo:hi]),
                            "weight α": g.row_weights[lo:hi]}), hide_index=True, key=TABLE)


def step_values(ctx: ViewContext, token: int, win: tuple[int, int]) -> None:
    trace, cfg, layer, head, (lo, hi) = ctx.trace, ctx.model.config, ctx.layer, ctx.head, win
    wv = notes.weighted_values(ctx.model, trace, layer, head, token)
    shared = (f" As with the keys, head {head} shares its value matrix with the other {cfg.kv_group - 1} query heads "
              f"of key/value head {head // cfg.kv_group}." if cfg.kv_group > 1 else "")
    _say(f"What a token passes on is its **value**. The notes factor the value map in two: `W_V` (“value down”, "
         f"[{cfg.d_model} × {cfg.d_head}]) maps each embedding to a value of {cfg.d_head} numbers, and `W_O` "
         f"(“value up”, [{cfg.d_head} × {cfg.d_model}]) maps it back to the embedding's size. The chosen query mixes "
         f"the values with its weights: **Σ_j α_j v_j**, written out below for {_tok(trace.tokens, token)}." + shared)
    if ctx.head_off:
        st.warning(f"Head {layer}.{head} is switched off: its weights count as 0 and it adds nothing.")
    names = [f"v of {n}" for n in _names(trace.tokens, lo, hi)] + ["Σ α v"]
    ctx.chart(strips_figure(np.concatenate([wv.values[lo:hi], wv.z[None, :]]), names, highlight=hi - lo,
                            x_title="dimension of d_head",
                            title=f"Value vectors (value down) and the weighted sum for query {token}"),
              key="notes_fig")
    _window_note(ctx, lo, hi)
    ctx.table(pd.DataFrame({"key": range(lo, hi), "token": [token_text(t) for t in trace.tokens[lo:hi]],
                            "α": wv.weights[lo:hi], "‖v‖": np.linalg.norm(wv.values[lo:hi], axis=-1)}),
              hide_index=True, key=TABLE)
    st.markdown("**Σ α v**, dimension by dimension:")
    ctx.table(pd.DataFrame({"i": range(len(wv.z)), "Σ α v": wv.z}), hide_index=True, key=VECTOR)


def step_delta(ctx: ViewContext, token: int, win: tuple[int, int]) -> None:
    model, trace, cfg, layer, head = ctx.model, ctx.trace, ctx.model.config, ctx.layer, ctx.head
    wv = notes.weighted_values(model, trace, layer, head, token)
    e = trace["resid_pre", layer][token].cpu().numpy()
    _say(f"Value up turns Σ α v into **Δe** ({cfg.d_model} numbers), the change this head proposes for "
         f"{_tok(trace.tokens, token)}: e → e + Δe. Here ‖e‖ = {np.linalg.norm(e):.3f} and ‖Δe‖ = "
         f"{np.linalg.norm(wv.delta):.3f}. Reading a vector through the model's output words (the logit lens) "
         "shows which next tokens it favours, before and after the change.")
    if note := content.post_norm_note(cfg):
        st.info(note)
    ctx.chart(change_figure(e, wv.delta, title=f"e → e + Δe of head {layer}.{head} at token {token}"),
              key="notes_fig")
    ctx.table(pd.DataFrame({"i": range(cfg.d_model), "e": e, "Δe": wv.delta, "e + Δe": e + wv.delta}),
              hide_index=True, key=VECTOR)
    st.caption(content.lens_note(cfg))
    labels = {"before": "e (before)", "delta": "Δe alone", "before_plus_delta": "e + Δe"}
    readings = lens.delta_lens(model, trace, layer, head, token, 5)
    up, _ = lens_tables({key: readings[key] for key in labels}, labels)
    ctx.table(up, key=TABLE)


def step_heads(ctx: ViewContext, token: int, win: tuple[int, int]) -> None:
    trace, cfg, layer = ctx.trace, ctx.model.config, ctx.layer
    ds = deltas.delta_sum(trace, layer, token)
    bias = " plus the output bias b_O" if ds.has_bias else ""
    _say(f"A block runs **{cfg.n_heads} heads** side by side, each with its own query, key and value maps, each "
         f"proposing its own Δe for {_tok(trace.tokens, token)}. The block adds them up{bias} and adds the sum to "
         f"the embedding. Check on this run: max |Σ head_out + b_O − attn_out| = **{ds.error:.2e}** (float "
         "rounding).")
    ctx.chart(delta_sum_figure(ds), key="notes_fig")
    ctx.table(pd.DataFrame({"head": range(cfg.n_heads), "‖Δe‖": ds.head_norms, "along attn_out": ds.along}),
              hide_index=True, key=TABLE)
    st.metric("max |Σ head_out + b_O − attn_out|", f"{ds.error:.2e}")


def step_next(ctx: ViewContext, token: int, win: tuple[int, int]) -> None:
    model, trace, cfg, layer = ctx.model, ctx.trace, ctx.model.config, ctx.layer
    b = notes.block(trace, layer, token)
    _say(f"After attention, the block's **MLP** works on each token alone (‖attn_out‖ = {b.attn_norm:.3f}, ‖mlp_out‖ = "
         f"{b.mlp_norm:.3f} at {_tok(trace.tokens, token)} in layer {layer}), and {cfg.n_layers} such blocks follow "
         "one another. At the end the last vector is turned into a probability for every word of the vocabulary.")
    if not cfg.has_lm_head or not trace.causal:
        why = ("has no language-model head" if not cfg.has_lm_head
               else "runs without the causal mask here, so its prediction would have seen the answer")
        st.info(f"{markdown_literal(cfg.name)} {why}: there is no next token to predict, so this step stops here. "
                "A causal language model such as SmolLM2 predicts one; switch the model in the sidebar.")
        ctx.chart(layers_figure(b.resid_norms, content.layer_names(cfg.n_layers),
                                title=f"Token {token} through the {cfg.n_layers} blocks: the size of its vector"),
                  key="notes_fig")
        ctx.table(pd.DataFrame({"where": content.layer_names(cfg.n_layers), "‖resid‖": b.resid_norms}),
                  hide_index=True, key=TABLE)
        return
    left, mid, right, seed_col = st.columns(4)
    temperature = left.slider("temperature", 0.0, 2.0, 1.0, 0.05, key="notes_temperature",
                              help="0 picks the most likely token (greedy); higher flattens the probabilities.")
    top_k = int(mid.number_input("top-k (0 = all)", 0, cfg.d_vocab, 0, key="notes_top_k"))
    top_p = right.slider("top-p", 0.05, 1.0, 1.0, 0.05, key="notes_top_p")
    seed = int(seed_col.number_input("seed", 0, 2**31 - 1, 0, key="notes_seed"))
    nt = notes.next_token(model, trace, token, temperature, top_k or None, top_p if top_p < 1 else None, seed)
    words = model.readable([*nt.ids, nt.picked, nt.greedy])
    picked, greedy = words[-2], words[-1]
    _say(markdown_literal(
        f"Sampling with seed {seed} picks “{token_text(picked)}” (probability {nt.picked_prob:.3f} under these "
        f"settings; the most likely is “{token_text(greedy)}”). {nt.kept:,} tokens can be picked. The same seed picks "
        "the same token again; temperature 0 always picks the most likely."))
    row = nt.ids.index(nt.picked) if nt.picked in nt.ids else None
    ctx.chart(sampling_figure(words[:-2], nt.probs, nt.sampled_probs, row,
                              title=f"Next token after position {token}: temperature {temperature:g}, "
                                    f"top-k {top_k or 'all'}, top-p {top_p:g}"), key="notes_fig")
    ctx.table(pd.DataFrame({"token": [token_text(w) for w in words[:-2]], "id": nt.ids,
                            "p (temperature 1)": nt.probs, "p (your settings)": nt.sampled_probs}),
              hide_index=True, key=TABLE)
    ctx.table(pd.DataFrame({"picked id": [nt.picked], "picked": [token_text(picked)], "greedy id": [nt.greedy]}),
              hide_index=True, key=VECTOR)


def step_size(ctx: ViewContext, token: int, win: tuple[int, int]) -> None:
    model, cfg = ctx.model, ctx.model.config
    a = params.attention_counts(model)
    g = content.GPT3
    shared = (f" ({cfg.name} shares keys and values: its {cfg.n_heads} query heads per block read {cfg.n_kv_heads} "
              "key/value heads.)" if a.kv_group > 1 else "")
    _say(f"One query matrix of this model has {a.per_matrix['W_Q']:,} weights; GPT-3's has {g.per_matrix:,}. "
         f"{markdown_literal(cfg.name)} has {model.n_params():,} parameters, GPT-3 about 175 billion.{shared} "
         f"It all runs fast because the work is the **same matrix product for every token at once**: the "
         f"{ctx.trace.n_tokens} queries of a head are one [{ctx.trace.n_tokens} × {cfg.d_model}] · "
         f"[{cfg.d_model} × {cfg.d_head}] product, the whole grid one more, every head in parallel: what a GPU "
         "does best.")
    rows = [("one query (or key) matrix", a.per_matrix["W_Q"], g.per_matrix),
            ("one head, four matrices", a.per_head_unshared, g.per_head),
            ("one block of attention", a.per_block[0], g.per_block),
            ("all attention", a.all_attention, g.all_attention),
            ("the whole model", model.n_params(), content.GPT3_TOTAL_QUOTED)]
    ctx.table(pd.DataFrame(rows, columns=["what", cfg.name, content.GPT3_NAME]).style.format(
        {cfg.name: "{:,}", content.GPT3_NAME: "{:,}"}), hide_index=True, key=TABLE)
    ctx.chart(share_figure(params.param_categories(model), f"Where {plotly_escape(cfg.name)}'s parameters are"),
              key="notes_fig")


STEPS = (
    Step("Tokens", "pattern", step_tokens),
    Step("Embeddings", "projections", step_embeddings),
    Step("The query", "qk", step_query),
    Step("The keys", "qk", step_keys),
    Step("Dot products", "pattern", step_dots),
    Step("The mask", "pattern", step_mask),
    Step("Softmax", "pattern", step_softmax),
    Step("Values", "deltas", step_values),
    Step("Δe: the change added to the embedding", "deltas", step_delta),
    Step("Many heads", "deltas", step_heads),
    Step("The next block and the next token", "generate", step_next),
    Step("How big this is", "params", step_size),
)


# ---- the walk: step choice, buttons, the link to the instrument ------------------------------------------------

def _go(step: int) -> None:
    state.set_value(STEP, step)


def _explore(schema: state.Schema, tab: str, token: int) -> None:
    """Open the instrument tab `tab`, its token choices on the notes' token."""
    state.open_tab(schema, tab)
    for key in TOKEN_WIDGETS:
        st.session_state[key] = token


def link(ctx: ViewContext, **changes) -> str:
    """The page's link for this state with some fields changed (tab=..., views=...)."""
    query = urllib.parse.urlencode(replace(_now(ctx), **changes).to_query(ctx.settings))
    return "?" + query.replace("~", "%7E")  # every character escaped: nothing in the link reads as Markdown


def chosen_token(ctx: ViewContext) -> int:
    """The token the walk follows: the link's, or the last word; a selectbox changes it."""
    trace, n = ctx.trace, ctx.trace.n_tokens
    default = last_word_token(ctx.model, trace)
    kept = int(ctx.state.value(TOKEN))
    kept = default if not 0 <= kept < n else kept
    if st.session_state.get("notes_token") is not None and not 0 <= st.session_state["notes_token"] < n:
        del st.session_state["notes_token"]
    chosen = st.selectbox("The token we follow", list(range(n)), index=kept, key="notes_token",
                          format_func=lambda i: f"{i}: {token_text(trace.tokens[i])}")
    state.set_value(TOKEN, -1 if chosen == default else chosen)
    return int(chosen)


def render(ctx: ViewContext) -> None:
    number = int(ctx.state.value(STEP))
    step = STEPS[number - 1]
    st.subheader(f"Step {number} of {len(STEPS)}: {step.title}")
    st.caption(markdown_literal(f"Following the notes on attention with {ctx.model.config.name}, layer {ctx.layer}, "
                                f"head {ctx.head} (choose them in the sidebar)."))
    st.progress(number / len(STEPS))
    token = chosen_token(ctx)
    back, forward, explore = st.columns([1, 1, 3])
    back.button("← back", key="notes_back", disabled=number == 1, on_click=_go, args=(number - 1,))
    forward.button("next →", key="notes_next", disabled=number == len(STEPS), on_click=_go, args=(number + 1,))
    explore.button(f"Explore this in the “{ctx.schema.tabs[step.tab]}” tab", key="notes_explore",
                   on_click=_explore, args=(ctx.schema, step.tab, token))
    step.draw(ctx, token, notes.window(ctx.trace.n_tokens, token))
    here, there = link(ctx, tab="notes"), link(ctx, tab=step.tab)
    name = markdown_literal(ctx.schema.tabs[step.tab])
    st.markdown(f"[Link to this step]({here}) · [the “{name}” tab in a new page]({there})")
