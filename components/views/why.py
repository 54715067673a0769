"""Tab "Why": why this prediction (direct logit attribution), why this score (query·key attribution) and which route
the information took (information-flow shares), with the route's top head edges checked against the model by
switching each head off. Numbers from engine.analysis.attribution, qk_attribution and flow."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

import engine
from components import probes, runs, state
from components.derived import per_trace
from components.figures import why as figures
from components.labels import markdown_literal, token_text
from components.state import Field
from components.views.context import ViewContext
from components.widgets import on_request, select
from engine.analysis.attribution import logit_difference, single_token
from engine.analysis.flow import flow_contributions, flow_route
from engine.analysis.roles import ROLES

SECTIONS = {"prediction": "Why this prediction", "score": "Why this score", "flow": "Which route"}
SECTION = Field("why.section", "prediction", choices=tuple(SECTIONS))
POSITION = Field("why.position", -1)  # the token whose next-token prediction is explained; -1: the last token
TARGET = Field("why.target", -1)  # a token id; -1: the top prediction
BASELINE = Field("why.baseline", -1)  # a token id; -1: the second prediction; NO_BASELINE: the target's logit alone
KEY = Field("why.key", -1)  # the key of the score explained; -1: the query's strongest key
THRESHOLD = Field("why.threshold", 0.04)
CHECK = Field("why.check", False)  # run the ablation check
FIELDS = (SECTION, POSITION, TARGET, BASELINE, KEY, THRESHOLD, CHECK)
NO_BASELINE = -2
CANDIDATES = 10  # predictions offered as target and baseline
TOP_PARTS = 12  # bars in the largest-parts figure
TOP_EDGES = 10  # route edges checked against the model
MOVES = 0.1  # a head "moves" the target's logit difference when switching it off changes it by more than this
GRAPH_AUTO = 64  # tokens up to which the whole flow graph is computed without asking
ROUTE_AUTO = 256  # tokens up to which the route is computed without asking (beyond: on request, with progress)
ROLE_MIN = 0.3  # a head's role is named in the sentence where its probe score reaches this


def render(ctx: ViewContext) -> None:
    section = st.radio("Show", SECTION.choices, index=SECTION.choices.index(ctx.state.value(SECTION)),
                       format_func=SECTIONS.get, horizontal=True, key="why_section")
    state.set_value(SECTION, section)
    position = choose_position(ctx)
    if section == "score":
        render_score(ctx, position)
        return
    cfg = ctx.model.config
    if not cfg.has_lm_head:
        st.info(markdown_literal(f"{cfg.name} has no language-model head: there is no prediction to explain. "
                                 "“Why this score” and “Which route” work for every model."))
        if section == "flow":
            render_flow(ctx, position, None)
        return
    target, baseline = choose_tokens(ctx, position)
    if section == "prediction":
        render_prediction(ctx, position, target, baseline)
    else:
        render_flow(ctx, position, (target, baseline))


# ---- choices -----------------------------------------------------------------------------------------------

def choose_position(ctx: ViewContext) -> int:
    """The token explained: its next-token prediction, the query of the score, the start of the route."""
    tokens, n = ctx.trace.tokens, ctx.trace.n_tokens
    kept = int(ctx.state.value(POSITION))
    default = n - 1
    if kept != -1 and not 0 <= kept < n:
        last = state.last_good("why.position")
        default = last if isinstance(last, int) and 0 <= last < n else n - 1
        st.warning(markdown_literal(f"Position {kept} is outside this {n}-token text (0..{n - 1}): showing "
                                    f"token {default} instead."))
    elif kept != -1:
        default = kept
    position = int(select("Token (its next-token prediction; the query of the score; the start of the route)",
                          list(range(n)), "why_position", default,
                          format_func=lambda i: f"{i}: {token_text(tokens[i])}"))
    state.set_value(POSITION, -1 if position == n - 1 else position)
    state.remember_good("why.position", position)
    return position


def predictions(trace: engine.Trace, position: int) -> tuple[list[int], list[float]]:
    logits = trace.logits_at(position)
    top = logits.softmax(-1).topk(CANDIDATES)
    return top.indices.tolist(), top.values.tolist()


def choose_tokens(ctx: ViewContext, position: int) -> tuple[int, int | None]:
    """(target, baseline or None): by default the top two predictions; any other token picked or typed."""
    model, s = ctx.model, ctx.state
    ids, probs = per_trace(predictions, ctx.trace, position)
    names = {i: f"{token_text(t)}  (#{r}, p = {p:.3f})"
             for r, (i, t, p) in enumerate(zip(ids, model.readable(ids), probs, strict=True), start=1)}
    chosen = {}
    for field, default, label in ((TARGET, ids[0], "Target token"), (BASELINE, ids[1], "Baseline token")):
        kept = int(s.value(field))
        if kept >= 0 and kept >= model.config.d_vocab:
            st.warning(markdown_literal(f"Token id {kept} is not in {model.config.name}'s vocabulary "
                                        f"(0..{model.config.d_vocab - 1}): using the default instead."))
            kept = -1
        value = default if kept < 0 else kept
        options = dict(names)
        if value not in options:
            options[value] = f"{token_text(model.readable([value])[0])}  (chosen)"
        if field is BASELINE:
            options[NO_BASELINE] = "none: the target's logit alone"
            if kept == NO_BASELINE:
                value = NO_BASELINE
        key = f"why_{field.link.split('.')[1]}"
        if st.session_state.get(key) not in options:
            st.session_state.pop(key, None)
        picked = select(label, list(options), key, value, format_func=options.get)
        state.set_value(field, -1 if picked == default else int(picked))
        chosen[field.link] = int(picked)
    st.text_input("…or type a token to use as the target (e.g. “ Lyon”, with its leading space)", key="why_typed",
                  on_change=take_typed, args=(model,))
    if (error := st.session_state.pop("why_typed_error", None)) is not None:
        st.warning(markdown_literal(error))
    target, baseline = chosen[TARGET.link], chosen[BASELINE.link]
    return target, None if baseline == NO_BASELINE else baseline


def take_typed(model: engine.Model) -> None:
    """on_change of the typed token: a single token becomes the target; anything else a message."""
    text = st.session_state.get("why_typed", "")
    if not text:
        return
    try:
        token = single_token(model, text)
    except engine.InputError as err:
        st.session_state["why_typed_error"] = str(err)
        return
    st.session_state.pop("why_target", None)
    state.set_value(TARGET, token)


def open_head(schema: state.Schema, layer: int, head: int) -> None:
    """Focus the app on a head and open the pattern view."""
    state.update(layer=layer, head=head)
    state.open_tab(schema, "pattern")


def open_clicked(schema: state.Schema, key: str) -> None:
    """on_select of a figure whose points carry [layer, head]."""
    points = (st.session_state.get(key) or {}).get("selection", {}).get("points", [])
    data = points[0].get("customdata") if points else None
    if isinstance(data, list | tuple) and len(data) >= 2:
        open_head(schema, int(data[0]), int(data[1]))


def token_name(model: engine.Model, token: int | None) -> str:
    return "nothing" if token is None else f"“{token_text(model.readable([token])[0])}”"


# ---- why this prediction ----------------------------------------------------------------------------------

def attribution(model: engine.Model, trace: engine.Trace, position: int, target: int, baseline: int | None):
    return engine.logit_attribution(model, trace, position, target, baseline)


def render_prediction(ctx: ViewContext, position: int, target: int, baseline: int | None) -> None:
    model, trace = ctx.model, ctx.trace
    try:
        a = per_trace(attribution, model, trace, position, target, baseline)
    except engine.EngineError as err:
        st.info(markdown_literal(f"Logit attribution is not available here: {err}"))
        return
    what = (f"logit({token_name(model, target)}) − logit({token_name(model, baseline)})" if baseline is not None
            else f"logit({token_name(model, target)})")
    left, right = st.columns(2)
    left.metric(markdown_literal(what), f"{a.actual:+.3f}")
    right.metric("sum of all parts", f"{a.total:+.3f}")
    st.caption(markdown_literal(
        f"After token {position}. Each part is what one piece of the residual stream adds to {what}, read "
        "directly through the final norm (its scale frozen at this token's) and the unembedding: the parts add up "
        "to the logit difference exactly. “Direct” means only the piece's own path to the output: a head that "
        "helps by feeding later heads gets no credit here."
        + family_note_prediction(ctx.model.config, trace, a)))
    ctx.chart(figures.head_map_figure(a.heads, f"Each head's direct part of {what}", "part"), key="why_heads_map",
              on_select=lambda: open_clicked(ctx.schema, "why_heads_map"), selection_mode="points")
    st.caption("Red pushes toward the target, blue toward the baseline. Click a head to open its pattern.")
    names, values = top_parts(a)
    ctx.chart(figures.parts_bar_figure(names, values, "The largest parts", "part of the logit difference"),
              key="why_parts")
    render_by_source(ctx, a, what)


def family_note_prediction(cfg: engine.ModelConfig, trace: engine.Trace, a) -> str:
    """What a family changes in the logit attribution's meaning ('' where nothing)."""
    notes = []
    if a.final_softcap:
        notes.append(f"{cfg.name} soft-caps its logits (cap·tanh(logit/cap), cap {a.final_softcap:g}): the logit "
                     "difference and its parts are those before the cap, which is not linear; the probabilities "
                     "come from the capped logits")
    if any(b.ln1_post is not None for b in trace.weights.blocks):
        notes.append("each attention output passes a norm before it is added: that norm is frozen at this token "
                     "like the final one, so each head's part is read through it")
    return "".join(f" {n[0].upper()}{n[1:]}." for n in notes)


def top_parts(a) -> tuple[list[str], list[float]]:
    """The TOP_PARTS parts of largest size: heads, MLPs, the embedding and the biases."""
    L, H = a.heads.shape
    named = [(f"head {la}.{h}", float(a.heads[la, h])) for la in range(L) for h in range(H)]
    named += [(f"MLP {la}", float(a.mlps[la])) for la in range(L)]
    named += [("embeddings", a.embed), ("biases", a.bias)]
    named.sort(key=lambda nv: -abs(nv[1]))
    return [n for n, _ in named[:TOP_PARTS]], [v for _, v in named[:TOP_PARTS]]


def render_by_source(ctx: ViewContext, a, what: str) -> None:
    L, H = a.heads.shape
    ranked = sorted(((la, h) for la in range(L) for h in range(H)), key=lambda lh: -abs(a.heads[lh]))
    current = (ctx.layer, ctx.head)
    st.session_state["why_head"] = current  # the app's head, whichever tab chose it
    layer, head = st.selectbox("Head to split by source token", ranked, key="why_head", on_change=take_pair,
                               format_func=lambda lh: f"{lh[0]}.{lh[1]}: {a.heads[lh]:+.3f}")
    values = a.heads_by_source[layer, head]
    if not np.isfinite(values).all():
        st.info(f"Head {layer}.{head}'s z is patched at this token: its part cannot be split by key.")
        return
    ctx.chart(figures.by_source_figure(values, ctx.trace.tokens, f"Head {layer}.{head}'s part of {what}, by the "
                                                                  "key it read"), key="why_by_source")
    st.caption("Each bar: the head's attention weight on that key times what the key's value adds to the logit "
               "difference through the head's output map. The bars add up to the head's part.")
    st.button(f"Open head {layer}.{head} in the pattern view", key="why_open_head", on_click=open_head,
              args=(ctx.schema, layer, head))


# ---- why this score ---------------------------------------------------------------------------------------

def qk(model: engine.Model, trace: engine.Trace, layer: int, head: int, query: int, key: int):
    return engine.qk_attribution(model, trace, layer, head, query, key)


def take_pair() -> None:
    layer, head = st.session_state["why_head"]
    state.update(layer=int(layer), head=int(head))


def take_head(key: str, name: str) -> None:
    """on_change of the layer or head choice: the app's layer or head (every tab follows)."""
    state.update(**{name: int(st.session_state[key])})


def take_key(strongest: int) -> None:
    key = int(st.session_state["why_key"])
    state.set_value(KEY, -1 if key == strongest else key)


def strongest_key(trace: engine.Trace, layer: int, head: int, query: int) -> int:
    return int(trace.pattern_rows(layer, slice(query, query + 1), head)[0].argmax())


def render_score(ctx: ViewContext, query: int) -> None:
    model, trace, cfg = ctx.model, ctx.trace, ctx.model.config
    left, middle, right = st.columns(3)
    st.session_state["why_layer"], st.session_state["why_score_head"] = ctx.layer, ctx.head  # the app's head
    layer = int(left.selectbox("Layer", range(cfg.n_layers), key="why_layer", on_change=take_head,
                               args=("why_layer", "layer")))
    head = int(middle.selectbox("Head", range(cfg.n_heads), key="why_score_head", on_change=take_head,
                                args=("why_score_head", "head")))
    strongest = per_trace(strongest_key, trace, layer, head, query)
    n = trace.n_tokens
    kept = int(ctx.state.value(KEY))
    if kept != -1 and not 0 <= kept < n:
        st.warning(markdown_literal(f"Key {kept} is outside this {n}-token text (0..{n - 1}): showing the "
                                    "strongest key."))
        kept = -1
    st.session_state["why_key"] = strongest if kept < 0 else kept
    key = int(right.selectbox("Key", range(n), key="why_key", on_change=take_key, args=(strongest,),
                              format_func=lambda j: f"{j}: {token_text(trace.tokens[j])}"
                              + ("  (strongest)" if j == strongest else "")))
    try:
        q = per_trace(qk, model, trace, layer, head, query, key)
    except engine.EngineError as err:
        st.info(markdown_literal(f"Query·key attribution is not available here: {err}"))
        return
    alpha = float(trace.pattern_rows(layer, slice(query, query + 1), head)[0, key])
    st.metric(f"score of head {layer}.{head}, query {query} → key {key}", f"{q.score:+.3f}",
              help="q·k × the model's scale (1/√d_head unless the family sets its own), before the softmax"
              + (", soft-capped" if q.softcap else ""))
    if q.softcap:
        st.caption(markdown_literal(
            f"{cfg.name} soft-caps its scores: score = cap·tanh(s/cap) with cap {q.softcap:g}, which is not linear. "
            f"The parts below split s = {q.uncapped:+.3f}, the score before the cap; the cap turns it into "
            f"{q.score:+.3f}."))
    st.caption(markdown_literal(
        f"Query {query} “{token_text(trace.tokens[query])}”, key {key} “{token_text(trace.tokens[key])}”: attention "
        f"weight {alpha:.3f}{masked_phrase(trace, layer, query, key) if q.masked else ''}. The residual stream "
        f"entering layer {layer} is split into parts (the embeddings, every bias, each earlier head's output, each "
        "earlier MLP's output); each part goes through the norm (scale frozen at its token), W_Q or W_K and its "
        "position's rotation alone, so every term is one query part · one key part and the terms add up to the "
        "score." + (" Post-norm model: every earlier norm is frozen the same way." if cfg.norm_placement == "post"
                    else "") + (" The q and k norms are frozen the same way, at this query's q and this key's k."
                                if cfg.qk_norm else "")))
    st.markdown(markdown_literal(score_sentence(ctx, q)))
    ctx.chart(figures.terms_figure(q.terms, q.parts, "Query part × key part"), key="why_terms")
    ctx.table(figures.largest_terms(q.terms, q.parts), hide_index=True, key="why_terms_table")
    sides = st.columns(2)
    for column, name, values in ((sides[0], "query side", q.query_side), (sides[1], "key side", q.key_side)):
        order = np.argsort(-np.abs(values), kind="stable")[:TOP_PARTS]
        with column:
            ctx.chart(figures.parts_bar_figure([q.parts[i] for i in order], values[order],
                                               f"The largest parts on the {name}", "part of the score"),
                      key=f"why_{name.split()[0]}_side")


def masked_phrase(trace: engine.Trace, layer: int, query: int, key: int) -> str:
    if key > query and trace.causal:
        return " (masked: the key comes after the query)"
    return f" (masked: the key is outside layer {layer}'s window of {trace.config.window(layer)} tokens)"


def head_role(ctx: ViewContext, part: str) -> str:
    """', a head that looks at the previous token' for a head part with a clear role on the probe; else ''."""
    if "." not in part or part.endswith("mlp"):
        return ""
    layer, head = (int(x) for x in part.split("."))
    try:
        reference = probes.reference_roles(ctx.model, ctx.settings)
    except engine.EngineError:
        return ""
    best = max(ROLES, key=lambda r: np.nan_to_num(reference[r][layer, head], nan=-1))
    if not reference[best][layer, head] >= ROLE_MIN:
        return ""
    return f", a head that looks at {ROLE_PHRASES[best]} (its {best.replace('_', ' ')} score on the probe: " \
           f"{reference[best][layer, head]:.2f})"


ROLE_PHRASES = {"previous_token": "the previous token", "duplicate_token": "earlier copies of its token",
                "induction": "the token after an earlier copy of its token", "first_token": "the first token",
                "self": "its own token"}


def part_phrase(part: str) -> str:
    if part == "embed":
        return "the token's own embedding"
    if part == "bias":
        return "the biases"
    if part.endswith(".mlp"):
        return f"MLP {part.split('.')[0]}'s output"
    return f"head {part}'s output"


def score_sentence(ctx: ViewContext, q) -> str:
    """The plain sentence for learners: the largest part on each side, and what a head part's head does."""
    out = []
    for name, values, where in (("key", q.key_side, "at this key"), ("query", q.query_side, "at this query")):
        i = int(np.argmax(np.abs(values)))
        share = abs(values[i]) / max(float(np.abs(values).sum()), 1e-12)
        out.append(f"The {name} side of this score comes mostly from {part_phrase(q.parts[i])} {where} "
                   f"({values[i]:+.2f} of {q.uncapped:+.2f}{' before the cap' if q.softcap else ''}; "
                   f"{share:.0%} of the parts' total size)"
                   f"{head_role(ctx, q.parts[i])}.")
    return " ".join(out)


# ---- which route ------------------------------------------------------------------------------------------

def route_of(model: engine.Model, trace: engine.Trace, position: int, threshold: float) -> engine.Route:
    return flow_route(model, trace, position, threshold)


def long_route(ctx: ViewContext, position: int, threshold: float) -> engine.Route:
    """The route, cached per run; past ROUTE_AUTO tokens computed with a progress bar."""
    model, trace = ctx.model, ctx.trace
    if trace.n_tokens <= ROUTE_AUTO:
        return per_trace(route_of, model, trace, position, threshold)
    key = ("why_route_of", trace.uid, position, threshold)
    if st.session_state.get("why_route_key") != key:
        bar = st.progress(0.0, text="Following the route down the layers…")
        route = flow_route(model, trace, position, threshold, progress=lambda done: bar.progress(min(done, 1.0)))
        bar.empty()
        st.session_state["why_route_key"], st.session_state["why_route_value"] = key, route
    return st.session_state["why_route_value"]


def whole_graph(model: engine.Model, trace: engine.Trace, threshold: float) -> list:
    """Every head edge at or above the threshold, every layer and query."""
    from engine.analysis.flow import RouteEdge

    edges = []
    for layer in range(trace.config.n_layers):
        f = flow_contributions(model, trace, layer)
        for h, i, j in np.argwhere(f.attn >= threshold):
            edges.append(RouteEdge(layer, "head", int(h), int(i), int(j), float(f.attn[h, i, j])))
    return edges


def render_flow(ctx: ViewContext, position: int, tokens: tuple[int, int | None] | None) -> None:
    model, trace, cfg = ctx.model, ctx.trace, ctx.model.config
    raw = float(ctx.state.value(THRESHOLD))
    if not 0 < raw <= 1:
        st.warning(f"A threshold of {raw} is outside (0, 1]: using {THRESHOLD.default}.")
        raw = THRESHOLD.default
    threshold = st.slider("Threshold: keep edges whose share is at least", 0.01, 0.5, value=min(max(raw, 0.01), 0.5),
                          step=0.01, key="why_threshold")
    state.set_value(THRESHOLD, float(threshold))
    if not on_request(trace.n_tokens, ROUTE_AUTO, "why_route", "the route"):
        return
    try:
        route = long_route(ctx, position, float(threshold))
    except engine.EngineError as err:
        st.info(markdown_literal(f"The route is not available here: {err}"))
        return
    graph = []
    if on_request(trace.n_tokens, GRAPH_AUTO, "why_graph", "the whole flow graph"):
        graph = per_trace(whole_graph, model, trace, float(threshold))
    title = f"Route from token {position} “{token_text(trace.tokens[position])}” (share ≥ {threshold:.2f})"
    ctx.chart(figures.flow_figure(trace.tokens, cfg.n_layers, graph, route.edges, title), key="why_flow",
              on_select=lambda: open_clicked(ctx.schema, "why_flow"), selection_mode="points")
    st.caption(markdown_literal(
        "In each block, a part's share is how much it brings the block's output closer (in L1 distance) to what "
        "the block actually outputs, over all the parts' (Ferrando & Voita, 2024). Red: the route from the chosen "
        "token down to the input, following edges at or above the threshold (each row of levels is one layer's "
        "input; heads draw diagonal edges from the key they read). Grey: every head edge at or above the threshold."
        " Wider lines carry larger shares. Click a red dot to open that head's pattern."
        + (f" {cfg.name} runs attention and the MLP in parallel (both read the block's input): the rule is applied "
           "once to their one sum; the MLP's share is of that sum, and the heads' and the residual's shares are of "
           "the rest (shown one level below it)." if cfg.parallel else "")
        + (" Each attention output passes a norm before it is added: frozen at each token, so every head's part "
           "goes through it." if any(b.ln1_post is not None for b in trace.weights.blocks) else "")))
    heads = route.head_edges()
    st.caption(f"{len(route.edges)} edges on the route, {len(heads)} of them through heads.")
    if tokens is None or not heads:
        return
    check = st.toggle(f"Check the top {min(TOP_EDGES, len(heads))} head edges against the model (switch each head "
                      "off, one run each)", value=bool(ctx.state.value(CHECK)), key="why_check")
    state.set_value(CHECK, check)
    if check:
        render_check(ctx, position, tokens, heads[:TOP_EDGES])


def render_check(ctx: ViewContext, position: int, tokens: tuple[int, int | None], edges: list) -> None:
    """For each top edge, the change of the target's logit difference when its head is switched off."""
    model, s = ctx.model, ctx.state
    if s.patch is not None:
        st.info("The check switches heads off in the app's run; it is not run while a patch is applied (“Clear "
                "the patch” at the top goes back to the unpatched run).")
        return
    target, baseline = tokens
    base = logit_difference(ctx.trace, position, target, baseline)
    effects = {}
    for e in edges:
        if (e.layer, e.head) in effects:
            continue
        try:
            ablated = runs.get_trace(model, s.text, s.causal, s.heads_off | {(e.layer, e.head)}, ctx.settings)
        except engine.EngineError as err:
            st.warning(markdown_literal(f"The check stopped: {err}"))
            return
        effects[(e.layer, e.head)] = logit_difference(ablated, position, target, baseline) - base
    rows = pd.DataFrame({
        "edge": [f"head {e.layer}.{e.head}: key {e.key} “{token_text(ctx.trace.tokens[e.key])}” → query {e.query}"
                 for e in edges],
        "share": [e.share for e in edges],
        "change when the head is off": [effects[(e.layer, e.head)] for e in edges]})
    ctx.table(rows, hide_index=True, key="why_check_table")
    moved = sum(abs(effects[(e.layer, e.head)]) > MOVES for e in edges)
    what = (f"logit({token_name(model, target)}) − logit({token_name(model, baseline)})" if baseline is not None
            else f"logit({token_name(model, target)})")
    st.caption(markdown_literal(
        f"Switching the head off removes its output at every token, not only this edge. {moved} of {len(edges)} "
        f"edges move {what} (now {base:+.3f}) by more than {MOVES}: where a large share barely moves the logit, the "
        "edge carries information the prediction does not need, or other heads make up for it."))
