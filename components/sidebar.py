"""The sidebar: the model picker, presets and the sentence, mask, layer, head, layout and the figures' format."""

from __future__ import annotations

import streamlit as st

import engine
from components import content, runs, state
from components.labels import markdown_literal
from components.settings import Settings
from components.state import KEYS, AppState
from components.widgets import keep_valid

OTHER_LABEL = "other…"


def model_label(name: str) -> str:
    if name == state.OTHER_MODEL:
        return OTHER_LABEL
    return f"{name} — {content.MODEL_DESCRIPTIONS[name]}" if name in content.MODEL_DESCRIPTIONS else name


def choose_model(settings: Settings, shown: str) -> engine.Model:
    """The model picker. A model that fails to load leaves the one `shown` in place, with the reason."""
    if refused := state.take_refused_model():
        st.sidebar.warning(markdown_literal(f"This server offers only its embedded models: the link's model "
                                            f"“{refused}” was not loaded."))
    options = list(engine.EMBEDDED) + ([state.OTHER_MODEL] if settings.allow_custom_models else [])
    keep_valid(state.PICKER_KEY, options.__contains__, options[0])
    target = st.sidebar.selectbox("Model", options, key=state.PICKER_KEY, format_func=model_label)
    if target == state.OTHER_MODEL:
        target = st.sidebar.text_input(
            "Hugging Face id or local folder" if settings.allow_local_folders else "Hugging Face id",
            key=state.CUSTOM_KEY, placeholder="gpt2, distilgpt2, bert-base-uncased",
            help="GPT-2, Llama and BERT families. Loading from the hub needs internet; remote code is never run.",
            max_chars=state.MAX_MODEL_NAME,
        ).strip()
    if target and target != shown:
        if state.model_failure(target) is None:
            try:
                runs.get_model(target, settings)
                state.update(model=target)
                shown = target
            except Exception as err:  # noqa: BLE001 - a broken checkpoint must not take the app down
                reason = str(err) if isinstance(err, engine.EngineError) else f"{type(err).__name__}: {err}"
                state.remember_model_failure(target, f"Could not load {target}: {reason} Still showing {shown}.")
        if failure := state.model_failure(target):  # escaped: a typed name or path shows as typed
            st.sidebar.error(markdown_literal(failure))
    try:
        return runs.get_model(shown, settings)
    except Exception as err:  # noqa: BLE001 - e.g. a bad ATTN_EXPLORER_DEVICE, or an evicted model now gone
        st.error(markdown_literal(f"Could not load {shown}: {err}"))
        if shown == state.DEFAULT_MODEL:
            st.stop()
        state.update(model=state.DEFAULT_MODEL)  # the picker keeps the failed name, which then fails with its reason
        return runs.get_model(state.DEFAULT_MODEL, settings)


def apply_preset() -> None:
    """on_change of the preset selectbox: put the chosen sentence into the text field."""
    chosen = st.session_state.get("preset")
    if chosen in content.SENTENCES:
        state.update(text=content.SENTENCES[chosen][1])


def sentence(settings: Settings) -> str:
    """The preset picker and the text field; returns the text to run (cut to the operator's limit)."""
    st.sidebar.selectbox("Preset sentences", list(content.SENTENCES), key="preset", index=None,
                         placeholder="choose a preset…", format_func=lambda i: content.SENTENCES[i][0],
                         on_change=apply_preset)
    text = st.sidebar.text_area("Sentence", key=KEYS["text"], height=110)
    if len(text) > settings.max_chars:
        st.sidebar.info(f"Your text has {len(text):,} characters; the first {settings.max_chars:,} are used.")
        text = text[: settings.max_chars]
    return text


def controls(cfg: engine.ModelConfig, current: AppState) -> None:
    """Mask, layer, head and layout; a layer or head the model does not have is brought into range first."""
    fitted = current.fit(cfg.n_layers, cfg.n_heads)
    if fitted != current:
        state.update(layer=fitted.layer, head=fitted.head, heads_off=fitted.heads_off)
    st.sidebar.radio("Masking", list(state.MASKS), key=KEYS["mask"], format_func=state.MASKS.get, horizontal=True,
                     help=markdown_literal(f"{cfg.name}'s own mask is "
                                           f"{'causal' if cfg.causal else 'none (bidirectional)'}."))
    st.sidebar.slider("Layer", 0, cfg.n_layers - 1, key=KEYS["layer"])
    st.sidebar.slider("Head", 0, cfg.n_heads - 1, key=KEYS["head"])
    st.sidebar.radio("Pattern layout", list(state.LAYOUTS), key=KEYS["layout"], format_func=state.LAYOUTS.get,
                     horizontal=True, help="Query rows: each row sums to 1. The notes draw keys as rows and queries "
                                           "as columns, so each column sums to 1.")
    st.sidebar.radio("Figures download as", list(state.FIGURE_FORMATS), key=KEYS["figure_format"],
                     format_func=state.FIGURE_FORMATS.get, horizontal=True,
                     help="What the camera button above every figure saves: SVG (vector) or PNG (3,000 pixels "
                          "wide), at a size for a paper.")
