"""Δe: how much each head moves each token, how the heads add up, a logit lens on a delta, value down/up."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import engine
from engine.analysis import deltas as analysis
from engine.analysis import lens

from . import content
from .labels import axis_ticks, markdown_literal, position_labels, token_labels, token_text
from .plot import chart


def token_select(label: str, tokens: Sequence[str], key: str, default: int | None = None) -> int:
    """A selectbox of token positions ('3: ␣mole') whose stale value (a shorter text) falls back to default."""
    n = len(tokens)
    default = n - 1 if default is None else min(max(default, 0), n - 1)
    options, show = list(range(n)), (lambda i: f"{i}: {token_text(tokens[i])}")
    if key in st.session_state:  # the user's choice wins; a position the text no longer has falls back
        if st.session_state[key] not in options:
            st.session_state[key] = default
        return int(st.selectbox(label, options, key=key, format_func=show))
    return int(st.selectbox(label, options, index=default, key=key, format_func=show))


def last_word_token(model: engine.Model, trace: engine.Trace) -> int:
    """The last position that is not a special token ([SEP] in BERT), the natural default to inspect."""
    plain = [i for i, t in enumerate(trace.token_ids) if t not in model.special_ids]
    return plain[-1] if plain else trace.n_tokens - 1


# ---- figures ------------------------------------------------------------------------------------------

def delta_norm_figure(norms: np.ndarray, tokens: Sequence[str], layer: int, token: int | None = None) -> go.Figure:
    """Heatmap heads × tokens of ‖Δe‖ [n_heads, n]."""
    n_heads, n = norms.shape
    hover = np.array([[[p] for p in position_labels(tokens)]] * n_heads, dtype=object)  # [n_heads, n, 1]
    heatmap = go.Heatmap(z=norms, customdata=hover, colorscale="Viridis", colorbar=dict(title=dict(text="‖Δe‖")),
                         hovertemplate="head %{y}<br>token %{customdata[0]}<br>‖Δe‖ %{z:.3f}<extra></extra>")
    vals, text = axis_ticks(token_labels(tokens, max_chars=14))
    layout = dict(
        xaxis=dict(title=dict(text="token (the embedding being moved)"), tickvals=vals, ticktext=text),
        yaxis=dict(title=dict(text="head"), autorange="reversed", dtick=1),
        title=dict(text=f"Layer {layer}: how far each head moves each token, ‖Δe‖ = ‖head_out‖"),
        height=max(260, 22 * n_heads + 140), margin=dict(l=10, r=10, t=50, b=10),
    )
    if token is not None:  # what add_vrect draws
        layout["shapes"] = [dict(type="rect", x0=token - 0.5, x1=token + 0.5, xref="x", y0=0, y1=1, yref="y domain",
                                 line=dict(color="red", width=2))]
    return go.Figure(data=[heatmap], layout=layout)


def delta_sum_figure(ds: analysis.DeltaSum) -> go.Figure:
    """Waterfall: each head's Δe along the attention output's direction, plus b_O, adds up to ‖attn_out‖."""
    names = [f"head {h}" for h in range(len(ds.along))] + (["b_O"] if ds.has_bias else []) + ["attn_out"]
    values = [*ds.along.tolist(), *([ds.bias_along] if ds.has_bias else []), ds.attn_norm]
    measure = ["relative"] * (len(values) - 1) + ["total"]
    waterfall = go.Waterfall(x=names, y=values, measure=measure, hovertemplate="%{x}: %{y:.3f}<extra></extra>")
    return go.Figure(data=[waterfall], layout=dict(
        title=dict(text="Stacked: each head's Δe along the direction of attn_out (they add up to its length)"),
        yaxis=dict(title=dict(text="component along attn_out")), height=360, margin=dict(l=10, r=10, t=50, b=10),
    ))


def delta_dims_figure(ds: analysis.DeltaSum, n_dims: int = 48) -> go.Figure:
    """Rows: each head's Δe, b_O, their sum and attn_out, on the dimensions where attn_out is largest."""
    dims = np.sort(np.argsort(-np.abs(ds.attn_out))[:n_dims])
    rows = [*ds.head_out[:, dims], ds.b_O[dims], (ds.heads_sum + ds.b_O)[dims], ds.attn_out[dims]]
    names = [f"head {h}" for h in range(len(ds.head_out))] + ["b_O", "Σ heads + b_O", "attn_out"]
    z = np.stack(rows)
    top = float(np.abs(z).max()) or 1.0
    heatmap = go.Heatmap(z=z, x=[str(d) for d in dims], y=names, colorscale="RdBu_r", zmin=-top, zmax=top,
                         hovertemplate="%{y}<br>dimension %{x}<br>%{z:.4f}<extra></extra>")
    return go.Figure(data=[heatmap], layout=dict(
        yaxis=dict(autorange="reversed"),
        xaxis=dict(title=dict(text=f"the {len(dims)} dimensions (of {len(ds.attn_out)}) where attn_out is largest"),
                   type="category"),
        title=dict(text="The vectors themselves: the last two rows are equal"),
        height=max(300, 20 * len(names) + 140), margin=dict(l=10, r=10, t=50, b=10),
    ))


def value_mix_figure(vf: analysis.ValueFactoring, tokens: Sequence[str]) -> go.Figure:
    """Per key token: the pattern weight and the size of its weighted value vector w_j · v_j W_O."""
    hover = position_labels(tokens)
    x = list(range(len(tokens)))
    data = np.array(list(zip(hover, vf.value_norms.tolist(), strict=True)), dtype=object)  # [n, 2]
    bars = [
        go.Bar(x=x, y=vf.weights, customdata=hover, name="weight", xaxis="x", yaxis="y",
               hovertemplate="%{customdata}<br>w %{y:.4f}<extra></extra>"),
        go.Bar(x=x, y=vf.contribution_norms, customdata=data, name="weighted value", marker=dict(color="darkorange"),
               xaxis="x2", yaxis="y2",
               hovertemplate="%{customdata[0]}<br>‖w v W_O‖ %{y:.3f}<br>‖v W_O‖ %{customdata[1]:.3f}<extra></extra>"),
    ]
    vals, text = axis_ticks(token_labels(tokens, max_chars=14))
    # Two rows sharing the x axis, laid out as make_subplots(rows=2, cols=1, shared_xaxes=True,
    # vertical_spacing=0.08, subplot_titles=...) does: equal heights, a title centred above each row.
    spacing = 0.08
    height = (1.0 - spacing) / 2
    top, bottom = [height + spacing, min(height + spacing + height, 1.0)], [0.0, height]
    titles = [dict(text=label, x=0.5, xref="paper", xanchor="center", y=domain[1], yref="paper", yanchor="bottom",
                   showarrow=False, font=dict(size=16))
              for label, domain in (("pattern weight w_j (query → key j)", top),
                                    ("‖w_j · v_j W_O[h]‖ (added to Δe)", bottom))]
    return go.Figure(data=bars, layout=dict(
        xaxis=dict(anchor="y", domain=[0.0, 1.0], matches="x2", showticklabels=False),
        yaxis=dict(anchor="x", domain=top),
        xaxis2=dict(anchor="y2", domain=[0.0, 1.0], tickvals=vals, ticktext=text,
                    title=dict(text="key token (whose value vector is mixed in)")),
        yaxis2=dict(anchor="x2", domain=bottom),
        annotations=titles, title=dict(text=f"Which value vectors query {vf.query} mixes into head {vf.head}'s Δe"),
        showlegend=False, height=460, margin=dict(l=10, r=10, t=80, b=10),
    ))


def lens_tables(readings: dict[str, lens.LensReading], labels: dict[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(pushed up, pushed down): one column per reading, rows ranked; tokens shown literally."""
    def table(side: str) -> pd.DataFrame:
        cols = {labels[key]: [f"{token_text(t)}  ({v:+.2f})" for t, v in getattr(r, side)]
                for key, r in readings.items()}
        return pd.DataFrame(cols, index=pd.RangeIndex(1, len(next(iter(readings.values())).up) + 1, name="rank"))

    return table("up"), table("down")


# ---- tab -----------------------------------------------------------------------------------------------

def render(model: engine.Model, trace: engine.Trace, run: Callable[[str, bool | None], engine.Trace], *,
           layer: int, head: int, key: str) -> None:
    """The Δe tab: per-head deltas, their sum, a logit lens on one head's delta, and value down/up."""
    tokens = trace.tokens
    st.subheader(f"Δe: what attention adds to each embedding · layer {layer}")
    st.caption("Each head proposes a change Δe to every token's embedding; the block adds the sum of all heads "
               "(plus the output bias b_O) to the residual stream.")
    if note := content.post_norm_note(trace.config):
        st.info(note)
    token = token_select("Token whose Δe to break down", tokens, key=f"{key}_token",
                         default=last_word_token(model, trace))
    chart(delta_norm_figure(analysis.head_delta_norms(trace, layer), tokens, layer, token), key=f"{key}_norms")

    ds = analysis.delta_sum(trace, layer, token)
    st.markdown(markdown_literal(f"Token {token}: “{token_text(tokens[token])}”. ")
                + f"‖attn_out‖ = {ds.attn_norm:.3f}; largest head: {int(ds.head_norms.argmax())} "
                f"(‖Δe‖ = {ds.head_norms.max():.3f}).")
    st.metric("check: max |Σ head_out + b_O − attn_out|", f"{ds.error:.2e}",
              help="Zero up to float32 rounding: the attention output is exactly the sum of the heads' Δe.")
    left, right = st.columns(2)
    with left:
        chart(delta_sum_figure(ds), key=f"{key}_sum")
    with right:
        chart(delta_dims_figure(ds), key=f"{key}_dims")

    st.subheader(f"Logit lens on head {layer}.{head}'s Δe")
    k = st.slider("tokens per list", 3, 15, 8, key=f"{key}_lens_k")
    st.caption(content.lens_note(model.config) + " Δe is read on its own, and added to the residual stream before it.")
    labels = dict(zip(lens.DELTA_LENS_ROWS, ["residual before", f"Δe of head {head}", f"before + Δe of head {head}",
                                              "before + all heads"], strict=True))
    up, down = lens_tables(lens.delta_lens(model, trace, layer, head, token, k), labels)
    st.markdown("**Pushes up most**")
    st.dataframe(up, key=f"{key}_lens_up")
    st.markdown("**Pushes down most**")
    st.dataframe(down, key=f"{key}_lens_down")

    st.subheader(f"Value down, value up · head {layer}.{head}")
    vf = analysis.value_factoring(model, trace, layer, head, token)
    d_model, d_head = vf.value_down_shape
    shared = (f" Key/value sharing: query head {head} reads key/value head {vf.kv_head}, which {vf.kv_group} "
              f"query heads share, so `W_V[{vf.kv_head}]` is stored once for all of them."
              if vf.kv_group > 1 else "")
    st.markdown(
        f"The value map of a head goes from the embedding space and back, factored in two: **value down** "
        f"`W_V[h]` ({d_model} × {d_head} = {vf.value_down_params:,} weights) maps an embedding to a {d_head}-dim "
        f"value vector, **value up** `W_O[h]` ({vf.value_up_shape[0]} × {vf.value_up_shape[1]} = "
        f"{vf.value_up_params:,} weights) maps it back to {d_model} dimensions. A full {d_model} × {d_model} map "
        f"would need {d_model * d_model:,}." + shared)
    st.caption(markdown_literal(
        f"Δe of head {head} at “{token_text(tokens[token])}” = Σ_j w_j · v_j W_O[h]: the value vectors of the "
        f"tokens it attends to, weighted by the pattern. Check: max |Σ − head_out| = {vf.error:.1e}."))
    if not bool(trace.head_mask[layer, head]):
        st.warning(f"Head {layer}.{head} is switched off: its weights are shown but it adds nothing (Δe = 0).")
    chart(value_mix_figure(vf, tokens), key=f"{key}_values")
