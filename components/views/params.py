"""Tab "Parameters": the loaded model counted from its actual weights, beside the notes' GPT-3 figures (a
calculator for any GPT-style configuration)."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import streamlit as st

import engine
from components import content
from components.figures.params import config_table, share_figure
from components.labels import markdown_literal, plotly_escape
from components.views.context import ViewContext
from engine.analysis import params as analysis


def model_table(model: engine.Model) -> pd.DataFrame:
    """Rows (what, parameters, how) for the loaded model; the last row is the total, equal to n_params()."""
    cfg = model.config
    a = analysis.attention_counts(model)
    cats = analysis.param_categories(model)
    m = a.per_matrix
    shared = a.kv_group > 1
    kv = f", one of {a.n_kv_heads} key/value heads shared by {a.kv_group} query heads" if shared else ""
    dims = f"{a.d_model} × {a.d_head}"
    rows = [
        ("W_Q, one head (query)", m["W_Q"], dims),
        ("W_K, one head (key)", m["W_K"], dims + kv),
        ("W_V, one head (value down)", m["W_V"], dims + kv),
        ("W_O, one head (value up)", m["W_O"], f"{a.d_head} × {a.d_model}"),
        ("one head, four matrices", a.per_head_unshared, "W_Q + W_K + W_V + W_O"),
    ]
    if shared:
        rows.append(("one head, its share", a.per_head, f"W_Q + W_O + (W_K + W_V) / {a.kv_group}"))
    biases = f" + biases {a.biases_per_block:,}" if a.biases_per_block else " (no biases)"
    rows += [
        ("attention of one block", a.per_block[0],
         f"{a.n_heads} × (W_Q + W_O) + {a.n_kv_heads} × (W_K + W_V){biases}"),
        ("all attention", cats["attention"], f"{cfg.n_layers} blocks"),
        ("MLPs", cats["MLPs"], f"{cfg.n_layers} × {cfg.mlp} MLP, d_mlp = {cfg.d_mlp}"),
        ("embeddings", cats["embeddings"], _embedding_note(model)),
        ("norms", cats["norms"], f"{cfg.norm} weights" + (" and biases" if cfg.norm == "layernorm" else "")),
        ("unembedding", cats["unembedding"], _unembed_note(model, cats["unembedding"])),
        ("total", sum(cats.values()), f"= {model.n_params():,} counted over the model's weights"),
    ]
    return pd.DataFrame(rows, columns=["what", "parameters", "how"])


def _embedding_note(model: engine.Model) -> str:
    cfg = model.config
    rows = analysis.embedding_rows(model)
    parts = [f"tokens {rows.tokens:,} × {cfg.d_model}"]
    if rows.positions is not None:
        parts.append(f"positions {rows.positions:,} × {cfg.d_model}")
    if rows.token_types is not None:
        parts.append(f"segments {rows.token_types} × {cfg.d_model}")
    return " + ".join(parts)


def _unembed_note(model: engine.Model, count: int) -> str:
    if not model.config.has_lm_head:
        return "none: an encoder without a language-model head"
    return "tied to the token embedding W_E, counted once there" if count == 0 else "W_U, its own weights"


def _styled(df: pd.DataFrame):
    return df.style.format({"parameters": "{:,}"})


def render(ctx: ViewContext) -> None:
    left, right = st.columns(2)
    with left:
        render_model(ctx)
    with right:
        render_config(ctx)


def render_model(ctx: ViewContext) -> None:
    """The loaded model, counted from its weights."""
    model, cfg = ctx.model, ctx.model.config
    name = markdown_literal(cfg.name)  # a visitor's hub id or folder: shown as typed
    st.subheader(f"{name}: counted from its weights")
    ctx.table(_styled(model_table(model)), hide_index=True, key="params_model")
    if cfg.n_kv_heads < cfg.n_heads:
        st.info(f"Key/value sharing (grouped-query attention): {name} has {cfg.n_heads} query heads per block "
                f"but only {cfg.n_kv_heads} key and value heads. Each group of {cfg.kv_group} query heads reads the "
                f"same keys and values, so a block stores {cfg.n_kv_heads} W_K and W_V instead of {cfg.n_heads}: "
                f"each head asks its own question (W_Q) and writes its own change (W_O), but reads shared answers.")
    cats = analysis.param_categories(model)
    title = f"Where {plotly_escape(cfg.name)}'s {model.n_params():,} parameters are"
    ctx.chart(share_figure(cats, title), key="params_model_fig")


def render_config(ctx: ViewContext) -> None:
    """The notes' count of GPT-3 from its configuration; change the configuration to count another model."""
    st.subheader("GPT-3 from its configuration, as the notes count it")
    st.caption("Change the configuration to count another model the same way; GPT-3's values are the defaults.")
    g = content.GPT3
    cols = [*st.columns(2), *st.columns(2)]
    fields = ("d_model", "d_head", "n_heads", "n_layers")
    values = {f: int(col.number_input(f, min_value=1, value=getattr(g, f), step=1, key=f"params_{f}"))
              for col, f in zip(cols, fields, strict=True)}
    c = replace(g, **values)
    name, quoted = (content.GPT3_NAME, content.GPT3_TOTAL_QUOTED) if c == g else ("your configuration", 0)
    ctx.table(_styled(config_table(c, quoted)), hide_index=True, key="params_config")
    share = c.all_attention / (quoted or c.total_estimate)
    st.markdown(f"Attention heads hold **{c.all_attention:,}** parameters, {share:.0%} of the "
                + ("published total of about 175 billion: the rest is mostly the MLPs." if quoted
                   else "total estimated from the configuration."))
    ctx.chart(share_figure({"attention": c.all_attention, "MLPs": c.mlps, "embeddings": c.embeddings},
                           f"{name}: where the parameters are"), key="params_config_fig")
