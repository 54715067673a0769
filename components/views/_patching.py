"""The Compare view's activation patching: carry A's z at its target into B's run at B's target, for every layer
(all heads of a layer at once) and for every head of a chosen layer (or all heads on request); the effects as a
map whose cells, clicked, make that patched run the app's run (state.Patch) for the other tabs."""

from __future__ import annotations

import functools

import numpy as np
import streamlit as st

from components import content, state, sweeps
from components.figures.compare import ALL_HEADS, cell_name, effect_map_figure, effect_table, point_to_cell
from components.labels import markdown_literal, token_text
from components.state import Field
from components.views._pair import Pair
from components.views.context import ViewContext
from components.widgets import select
from engine.analysis import compare
from engine.analysis.predict import top_predictions
from engine.serving.memory import sweep_bytes

LAYER = Field("compare.layer", -1)  # the layer whose heads are swept one by one; -1 = the layer that moves B most
ALL = Field("compare.all", False)  # sweep every head of every layer
TOKEN = Field("compare.token", -1)  # the token whose log-prob is followed; -1 = A's top prediction after its target
EFFECT = Field("compare.effect", "gap", choices=tuple(content.EFFECTS))
FIELDS = (LAYER, ALL, TOKEN, EFFECT)
MAP_KEY, CELL_KEY = "compare_map", "compare_cell"
CANDIDATES = 10  # tokens offered to follow: each side's top predictions after its target
SAME_DIRECTION = 1e-6  # 1 − cos(B, A) below this: the targets point the same way, no gap to close


def render(ctx: ViewContext, pair: Pair) -> None:
    cfg, s = ctx.model.config, ctx.state
    st.subheader("Activation patching: carry A's heads into B")
    st.markdown("Each patch replaces the z (pattern @ v, before W_O) of some heads at B's target by their z at A's "
                "target, in B's run only; B's earlier layers are reused. Effects:")
    st.markdown(content.EFFECT_DEFINITIONS["gap"])
    token, effect = None, "gap"
    if cfg.causal and cfg.has_lm_head:
        st.markdown(content.EFFECT_DEFINITIONS["logprob"])
        token = choose_token(ctx, pair)
        effect = st.radio("Map", list(content.EFFECTS), index=list(content.EFFECTS).index(s.value(EFFECT)),
                          format_func=content.EFFECTS.get, horizontal=True, key="compare_effect")
        state.set_value(EFFECT, effect)
    else:
        st.info(markdown_literal(content.NO_LOGPROB.format(name=cfg.name)))
    layers = sweep(ctx, pair, "layers", 0, token)
    layer = choose_layer(ctx, layers, effect)
    every = st.toggle(f"Sweep all {cfg.n_layers * cfg.n_heads} heads one by one (not only layer {layer}'s)",
                      value=bool(s.value(ALL)), key="compare_all")
    state.set_value(ALL, every)
    heads = sweep(ctx, pair, "all", 0, token) if every else sweep(ctx, pair, "heads", layer, token)
    gap, logprob = effect_grid(layers, heads, every, layer)
    if 1 - layers.base_cos < SAME_DIRECTION:  # (a) divides by 1 − cos(B, A): rounding noise, not an effect
        gap = np.full_like(gap, np.nan)
        st.info(f"A's and B's targets already point the same way after the last block (cos = {layers.base_cos:.6f}): "
                "there is no gap for a patch to close, so (a) is left out.")
    render_baseline(ctx, layers)
    if np.isfinite(logprob if effect == "logprob" and logprob is not None else gap).any():
        render_map(ctx, pair, gap, logprob, effect)


def sweep(ctx: ViewContext, pair: Pair, kind: str, layer: int, token: int | None) -> compare.Sweep:
    """One cached sweep: "layers" (all heads of each layer), "heads" (each head of `layer`) or "all"."""
    a, ta, b, tb = pair.a, pair.target_a, pair.b, pair.target_b
    key = (ctx.model.config.name, ctx.model.source, pair.text_a, pair.text_b, ta, tb, kind, layer, token,
           ctx.settings.max_tokens)
    cfg = ctx.model.config
    n = cfg.n_layers * cfg.n_heads
    cells = {"layers": cfg.n_layers, "heads": cfg.n_heads, "all": n}[kind]
    need = sweep_bytes(cfg, b.n_tokens, cells, b.causal)

    def get(compute, label: str) -> compare.Sweep:
        return sweeps.get(key, compute, label, need, ctx.settings)

    if kind == "layers":
        return get(lambda progress: compare.sweep_layers(a, ta, b, tb, token, progress),
                   "Patching each layer of B (all its heads at once)…")
    if kind == "heads":
        return get(lambda progress: compare.sweep_heads(a, ta, b, tb, layer, token, progress),
                   f"Patching each head of layer {layer}…")
    return get(lambda progress: compare.sweep_all_heads(a, ta, b, tb, token, progress),
               f"Patching all {n} heads, one at a time…")


def effect_grid(layers: compare.Sweep, heads: compare.Sweep, every: bool, layer: int
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """(gap closed, Δ log p or None) as [n_layers, 1 + n_heads]: column 0 the layer sweep, columns 1.. the heads
    swept one by one (every layer's, or `layer`'s only); NaN where nothing was swept."""
    out = []
    for name in ("gap_closed", "logprob_change"):
        by_layer, by_head = getattr(layers, name), getattr(heads, name)
        if by_layer is None:
            out.append(None)
            continue
        grid = np.full((len(by_layer), 1 + by_head.shape[-1]), np.nan)
        grid[:, 0] = by_layer
        grid[slice(None) if every else layer, 1:] = by_head
        out.append(grid)
    return out[0], out[1]


def choose_token(ctx: ViewContext, pair: Pair) -> int:
    """The token whose log-prob the sweeps follow: A's top prediction after its target unless the visitor picks
    another of A's or B's top predictions (kept in the link)."""
    names: dict[int, str] = {}
    for side, trace, target in (("A", pair.a, pair.target_a), ("B", pair.b, pair.target_b)):
        for rank, p in enumerate(top_predictions(ctx.model, trace, target, k=CANDIDATES), start=1):
            names.setdefault(p.token_id, f"{token_text(p.token)}  ({side}'s #{rank}, p = {p.prob:.3f})")
    default = next(iter(names))
    kept = int(ctx.state.value(TOKEN))
    if 0 <= kept < ctx.model.config.d_vocab and kept not in names:
        names[kept] = f"{token_text(ctx.model.readable([kept])[0])}  (from the link)"
    chosen = select("Token whose log-probability (b) follows, after B's target", list(names), "compare_token",
                    kept if kept in names else default, format_func=names.get)
    state.set_value(TOKEN, -1 if chosen == default else chosen)
    return int(chosen)


def choose_layer(ctx: ViewContext, layers: compare.Sweep, effect: str) -> int:
    """The layer whose heads are swept one by one: by default the one whose all-heads patch moves B most."""
    values = layers.logprob_change if effect == "logprob" else layers.gap_closed
    best = int(np.nanargmax(values)) if np.isfinite(values).any() else 0
    kept = int(ctx.state.value(LAYER))
    n = ctx.model.config.n_layers
    layer = select("Sweep the heads of layer", list(range(n)), "compare_layer", kept if 0 <= kept < n else best,
                   format_func=lambda la: f"{la}" + ("  (moves B most)" if la == best else ""))
    state.set_value(LAYER, -1 if layer == best else layer)
    return int(layer)


def render_map(ctx: ViewContext, pair: Pair, gap: np.ndarray, logprob: np.ndarray | None, effect: str) -> None:
    """The effect map (click a cell to see that patched run), the top cells, and the same choice by keyboard."""
    shown = logprob if effect == "logprob" and logprob is not None else gap
    name = content.EFFECTS[effect]
    current = current_cell(ctx, pair)
    ctx.chart(effect_map_figure(shown, title=f"{name} when A's z replaces B's at the target", colorbar=name,
                                selected=current),
              MAP_KEY, on_select=functools.partial(show_clicked_cell, pair.text_a, pair.target_a, pair.text_b,
                                                   pair.target_b, pair.b.n_tokens, ctx.model.config.n_heads),
              selection_mode="points")
    st.caption("Column “all”: every head of the layer patched at once; the other columns one head each. Click a cell "
               "to make that patched run the app's run: the other tabs (pattern, Δe, predictions, …) then show B "
               "with the patch, and the caption at the top says what is patched.")
    ctx.table(effect_table(gap, logprob, effect), hide_index=True, key="compare_top_cells")
    cells = [(int(la), int(c) - 1) for la, c in np.argwhere(np.isfinite(shown))]
    cells.sort(key=lambda cell: -shown[cell[0], cell[1] + 1])
    select("Or choose a patch", cells, CELL_KEY, current if current in cells else cells[0],
           format_func=lambda c: f"{cell_name(*c)}: {name} {shown[c[0], c[1] + 1]:+.3f}")
    st.button("Show B with this patch in the other tabs", key="compare_apply", on_click=show_chosen_cell,
              args=(pair.text_a, pair.target_a, pair.text_b, pair.target_b, pair.b.n_tokens,
                    ctx.model.config.n_heads))
    if current is not None:
        st.success(markdown_literal(f"The app's run is B with {cell_name(*current)} patched from A: open another tab "
                                    "to see it; “Clear the patch” at the top goes back."))


def render_baseline(ctx: ViewContext, layers: compare.Sweep) -> None:
    """The unpatched numbers the effects are measured from."""
    line = f"Before patching: cos(B, A) at the targets after the last block = {layers.base_cos:.3f}"
    if layers.token_id is not None:
        token = token_text(ctx.model.readable([layers.token_id])[0])
        line += f"; log p(“{token}”) after B's target = {layers.base_logprob:.3f}"
    st.caption(markdown_literal(line + "."))


def cell_heads(layer: int, head: int, n_heads: int) -> tuple[tuple[int, int], ...]:
    return tuple((layer, h) for h in range(n_heads)) if head == ALL_HEADS else ((layer, head),)


def current_cell(ctx: ViewContext, pair: Pair) -> tuple[int, int] | None:
    """The cell whose patch the app's run has now, if it is one of this comparison's."""
    p, n_heads = ctx.state.patch, ctx.model.config.n_heads
    if p is None or ctx.state.text != pair.text_b or (p.source, p.source_at, p.at) != (
            pair.text_a, pair.target_a, pair.target_b):
        return None
    layer = p.heads[0][0]
    for head in (ALL_HEADS, p.heads[0][1]):
        if p.heads == cell_heads(layer, head, n_heads):
            return layer, head
    return None


def apply_cell(text_a: str, target_a: int, text_b: str, target_b: int, n_tokens_b: int, n_heads: int, layer: int,
               head: int) -> None:
    """Make B with this cell's patch the app's run: the model's own mask, every head on, predictions after B's
    target."""
    patch = state.Patch(text_a, target_a, target_b, cell_heads(layer, head, n_heads))
    state.update(text=text_b, mask="default", heads_off=frozenset(), patch=patch,
                 position=-1 if target_b == n_tokens_b - 1 else target_b)


def show_chosen_cell(text_a: str, target_a: int, text_b: str, target_b: int, n_tokens_b: int, n_heads: int
                     ) -> None:
    """on_click of the button beside the choice of a patch (read when clicked: the choice may change with it)."""
    cell = st.session_state.get(CELL_KEY)
    if cell is not None:
        apply_cell(text_a, target_a, text_b, target_b, n_tokens_b, n_heads, *cell)


def show_clicked_cell(text_a: str, target_a: int, text_b: str, target_b: int, n_tokens_b: int, n_heads: int
                      ) -> None:
    """on_select of the effect map."""
    points = (st.session_state.get(MAP_KEY) or {}).get("selection", {}).get("points", [])
    cell = point_to_cell(points[0]) if points else None
    if cell is not None:
        apply_cell(text_a, target_a, text_b, target_b, n_tokens_b, n_heads, *cell)
