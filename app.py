"""Attention Explorer: Streamlit entry. Sidebar controls, caching, tabs and URL state; the views live in
components/ and every number comes from engine/."""

from __future__ import annotations

import contextlib
import time
import urllib.parse
import uuid

import streamlit as st

import engine
from components import explorer, presets, recovery, settings
from components.content import MODEL_DESCRIPTIONS
from components.labels import markdown_literal
from components.waiting import rate_limited, show_waiting
from engine.serving.cache import RunCache
from engine.serving.runs import get_trace as shared_trace
from engine.serving.store import ModelStore

st.set_page_config(page_title="Attention Explorer", page_icon="🔍", layout="wide")
SETTINGS = settings.load()
MASKS = {"model default": None, "causal": True, "none": False}
LAYOUTS = {"query rows": "query_rows", "key rows (notes)": "key_rows"}
OTHER = "other…"
MAX_MODEL_NAME = 512  # longest hub id or folder path taken from the field or the URL (hub ids: at most 96)
MAX_LINK_TEXT = 6_000  # longest URL-encoded sentence kept in the link (proxies refuse request lines over 8 KB)


# ---- caching: one model per name and one trace cache per server process, shared by all sessions -----------

@st.cache_resource(show_spinner=False)
def model_store() -> ModelStore:
    return ModelStore(max_models=3)


def get_model(name: str) -> engine.Model:
    """The shared model; the first load in a server process shows its progress (a cold start dequantises)."""
    store = model_store()

    def load(progress=None) -> engine.Model:
        return engine.load(name, progress=progress, **SETTINGS.load_options())  # the operator's limits and policy

    if name in store:
        return store.get(name, load)
    slot = st.empty()  # the progress shows while loading and goes once the model is ready
    with slot.status(f"Loading {markdown_literal(name)}…", expanded=True):  # labels render Markdown
        bar = st.progress(0.0)

        def progress(fraction: float, message: str) -> None:
            bar.progress(min(max(fraction, 0.0), 1.0), text=markdown_literal(message))

        model = store.get(name, lambda: load(progress))
    slot.empty()
    return model


@st.cache_resource(show_spinner=False)
def trace_cache() -> RunCache:
    return RunCache(SETTINGS.memory_mb << 20, SETTINGS.trace_cache_entries, SETTINGS.runs_per_minute)


def get_trace(model: engine.Model, text: str, causal: bool | None, heads_off: frozenset) -> engine.Trace:
    """The shared run; while it waits for memory or computes, a notice says so (and where it is in the queue)."""
    if "session_id" not in st.session_state:
        st.session_state.session_id = uuid.uuid4().hex
    with show_waiting() as on_wait:
        return shared_trace(trace_cache(), model, text, causal=causal, heads_off=heads_off,
                            max_tokens=SETTINGS.max_tokens, session=st.session_state.session_id, on_wait=on_wait)


def run_view(model: engine.Model, text: str, causal: bool | None,
             heads_off: frozenset) -> tuple[engine.Trace, engine.Trace | None]:
    """The run the page shows and, while an intervention is active, the unmodified run beside it."""
    trace = get_trace(model, text, causal, heads_off)
    intervened = bool(heads_off) or (causal is not None and causal != model.config.causal)
    return trace, get_trace(model, text, None, frozenset()) if intervened else None


# ---- state: session_state, restored from and written back to the URL ---------------------------------------

def parse_heads(value: str) -> frozenset:
    heads = set()
    for item in value.split(","):
        layer, _, head = item.strip().partition(".")
        if layer.isdigit() and head.isdigit():
            heads.add((int(layer), int(head)))
    return frozenset(heads)


def init_state() -> None:
    """First run of a session: defaults, overridden by whatever the URL carries."""
    if "initialised" in st.session_state:
        return
    s, q = st.session_state, st.query_params
    s.initialised = True
    s.model = "smollm2-135m"
    s.model_choice = "smollm2-135m"
    s.custom_model = ""
    s.text = presets.SENTENCES[0][1]
    s.mask = "model default"
    s.layer, s.head, s.position = 0, 0, -1
    s.layout = "query rows"
    s.heads_off = frozenset()
    s.failed_model = {}
    if q.get("model"):
        if q["model"] in engine.EMBEDDED:
            s.model_choice = s.model = q["model"]
        elif SETTINGS.allow_custom_models:
            s.model_choice, s.custom_model = OTHER, q["model"][:MAX_MODEL_NAME]
        else:  # a public server: a link cannot load a hub id or a folder
            s.url_model_refused = q["model"][:MAX_MODEL_NAME]
    if q.get("text"):
        s.text = q["text"][: SETTINGS.max_chars]
    s.mask = q.get("mask") if q.get("mask") in MASKS else s.mask
    s.layout = q.get("layout") if q.get("layout") in LAYOUTS else s.layout
    if q.get("tab") in explorer.TABS:
        s.tab = q["tab"]
    for name in ("layer", "head", "position"):
        try:
            s[name] = int(q.get(name, s[name]))
        except ValueError:
            pass
    s.heads_off = parse_heads(q.get("off", ""))


def write_url(model_name: str) -> None:
    s = st.session_state
    params = {"model": model_name, "text": s.text[: SETTINGS.max_chars], "mask": s.mask, "layer": s.layer,
              "head": s.head, "layout": s.layout, "position": s.position,
              "tab": s.get("tab") or next(iter(explorer.TABS))}
    if len(urllib.parse.quote(params["text"])) > MAX_LINK_TEXT:  # a longer link fails to load (400, 414)
        del params["text"]
        st.sidebar.caption("This sentence is too long to keep in the page's link.")
    if s.heads_off:
        params["off"] = ",".join(f"{layer}.{head}" for layer, head in sorted(s.heads_off))
    wanted = {k: str(v) for k, v in params.items()}
    if st.query_params.to_dict() != wanted:  # the whole link: a key no longer wanted ("off") goes too
        st.query_params.from_dict(wanted)


# ---- sidebar ------------------------------------------------------------------------------------------

def choose_model() -> engine.Model:
    """The model picker. A model that fails to load leaves the previous one in place, with the reason."""
    s = st.session_state
    if s.get("url_model_refused"):
        st.sidebar.warning(markdown_literal(f"This server offers only its embedded models: the link's model "
                                            f"“{s.pop('url_model_refused')}” was not loaded."))
    options = list(engine.EMBEDDED) + ([OTHER] if SETTINGS.allow_custom_models else [])
    if s.model_choice not in options:
        s.model_choice = options[0]
    choice = st.sidebar.selectbox(
        "Model", options, key="model_choice",
        format_func=lambda n: f"{n} — {MODEL_DESCRIPTIONS[n]}" if n in MODEL_DESCRIPTIONS else n,
    )
    target = choice
    if choice == OTHER:
        target = st.sidebar.text_input(
            "Hugging Face id or local folder" if SETTINGS.allow_local_folders else "Hugging Face id",
            key="custom_model", placeholder="gpt2, distilgpt2, bert-base-uncased",
            help="GPT-2, Llama and BERT families. Loading from the hub needs internet; remote code is never run.",
            max_chars=MAX_MODEL_NAME,
        ).strip()
    if target and target != s.model:
        if target not in s.failed_model:
            try:
                get_model(target)
                s.model = target
            except Exception as err:  # noqa: BLE001 - a broken checkpoint must not take the app down
                reason = str(err) if isinstance(err, engine.EngineError) else f"{type(err).__name__}: {err}"
                s.failed_model[target] = f"Could not load {target}: {reason} Still showing {s.model}."
        if target in s.failed_model:  # escaped: a typed name or path shows as typed, never as Markdown
            st.sidebar.error(markdown_literal(s.failed_model[target]))
    try:
        return get_model(s.model)
    except Exception as err:  # noqa: BLE001 - e.g. a bad ATTN_EXPLORER_DEVICE, or an evicted model now gone
        default = next(iter(engine.EMBEDDED))
        st.error(markdown_literal(f"Could not load {s.model}: {err}"))
        if s.model == default:
            st.stop()
        s.model = default  # the picker keeps the failed name, which then fails with its reason
        return get_model(default)


def sidebar_text() -> str:
    s = st.session_state
    st.sidebar.selectbox("Preset sentences", [label for label, _ in presets.SENTENCES], key="preset",
                         index=None, placeholder="choose a preset…", on_change=presets.apply_preset)
    st.sidebar.text_area("Sentence", key="text", height=110)
    text = s.text
    if len(text) > SETTINGS.max_chars:
        st.sidebar.info(f"Your text has {len(text):,} characters; the first {SETTINGS.max_chars:,} are used.")
        text = text[: SETTINGS.max_chars]
    return text


def sidebar_controls(model: engine.Model) -> None:
    cfg, s = model.config, st.session_state
    st.sidebar.radio("Masking", list(MASKS), key="mask", horizontal=True,
                     help=markdown_literal(f"{cfg.name}'s own mask is "
                                           f"{'causal' if cfg.causal else 'none (bidirectional)'}."))
    s.layer = min(max(int(s.layer), 0), cfg.n_layers - 1)
    s.head = min(max(int(s.head), 0), cfg.n_heads - 1)
    st.sidebar.slider("Layer", 0, cfg.n_layers - 1, key="layer")
    st.sidebar.slider("Head", 0, cfg.n_heads - 1, key="head")
    st.sidebar.radio("Pattern layout", list(LAYOUTS), key="layout", horizontal=True,
                     help="Query rows: each row sums to 1. The notes draw keys as rows and queries as columns, "
                          "so each column sums to 1.")
    s.heads_off = frozenset((la, h) for la, h in s.heads_off if la < cfg.n_layers and h < cfg.n_heads)


# ---- page ---------------------------------------------------------------------------------------------

def main() -> None:
    init_state()
    recovery.rerun_on_reconnect()  # after a replica dies, the page re-runs on the next one from its link
    s = st.session_state
    st.sidebar.title("Attention Explorer")
    model = choose_model()
    text = sidebar_text()
    sidebar_controls(model)

    if not text.strip():
        st.warning("The sentence is empty: type something to see its attention."
                   + (" Showing the last sentence that ran." if s.get("last_good_text") else ""))
        text = s.get("last_good_text") or presets.SENTENCES[0][1]
    causal = MASKS[s.mask]
    try:
        trace, base = run_view(model, text, causal, s.heads_off)
        s.last_good_run = (s.model, text, causal, s.heads_off)
    except engine.RateLimited as err:  # past this visitor's cap: the last view that ran stays (from the cache)
        last, trace = s.get("last_good_run"), None
        if last and last[0] == s.model:
            with contextlib.suppress(engine.EngineError):
                trace, base = run_view(model, *last[1:])
        st.warning(markdown_literal(rate_limited(err, showing_last=trace is not None)))
        if trace is None:
            return
        text = last[1]
    except engine.EngineError as err:
        st.error(markdown_literal(f"This text could not be run: {err}"))
        return
    s.last_good_text = text
    if trace.truncated:
        st.info(f"The text has {trace.n_tokens_in_text:,} tokens; the first {trace.n_tokens:,} were used "
                f"(limit: {min(SETTINGS.max_tokens, model.config.max_tokens):,}).")
    st.caption(markdown_literal(
        f"{model.config.name}: {model.config.n_layers} layers × {model.config.n_heads} heads, "
        f"{trace.n_tokens} tokens, mask: {'causal' if trace.causal else 'none'}, "
        f"{len(s.heads_off)} head(s) switched off"))

    view = explorer.View(model=model, trace=trace, base=base, layer=s.layer, head=s.head,
                         layout=LAYOUTS[s.layout], run=lambda t, c: get_trace(model, t, c, frozenset()))
    # Only the open tab runs (on_change="rerun"), so a rerun pays for what the user is looking at.
    tabs = st.tabs(list(explorer.TABS), key="tab", on_change="rerun")
    for container, render in zip(tabs, explorer.TABS.values(), strict=True):
        if container.open:
            with container:
                render(view)
    write_url(s.model)


started = time.perf_counter()
main()
st.session_state.server_ms = (time.perf_counter() - started) * 1000

