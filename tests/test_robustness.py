"""Bad input, operator settings and isolation, through the real app.py (AppTest) and the engine.

Nothing a visitor types, pastes or puts in a link may crash the app, leak into another session, or run code the
operator did not choose. The many-thread engine test (≥ 8 threads, different masks and head switches, each equal
to the same run alone) is `test_many_threads_match_solo_runs` in test_engine.py; here the same is checked for
whole app sessions running at once.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
import torch
from apptest_tools import app_state, charts, decode, new_app, open_tab, sessions_at_once, start
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1 import element_tree as et

import engine
from components import settings, state
from components.content import DEFAULT_SENTENCE, MODEL_DESCRIPTIONS
from components.views.registry import VIEWS, label
from engine import loading

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
SENTENCE = "The mole dug a tunnel under the lawn"
EMPTY_WARNING = "The sentence is empty: type something to see its attention."
MARKUP = ("<script>alert(1)</script> <img src=x onerror=alert(1)> **bold** _it_ $x^2$ :red[red] :smile: "
          "[link](javascript:alert(1)) `code` ~~gone~~ # heading &amp; -> <=")
# Unusual text a visitor can paste: (what it is, the text). Every one must run and show every character.
UNICODE = [
    ("emoji, ZWJ sequences and flags", "The 👩‍🔬 scientist loves 🧪 and 🇫🇷 😀"),
    ("CJK", "我爱北京天安门，東京は日本の首都です"),
    ("right-to-left (Arabic, Hebrew)", "مرحبا بالعالم and שלום עולם"),
    ("combining marks", "Zalgo Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇ and cafe\u0301"),
    ("zero-width characters and a BOM", "zero\u200bwidth\u200cnon\u200djoiner\ufeffbom\u2060end"),
    ("bidi override", "abc \u202egnirts desrever\u202c def"),
    ("control characters", "bell\x07 escape\x1b[31m red\x1b[0m del\x7f form\x0cfeed back\x08space"),
    ("NUL bytes", "nul\x00byte\x00\x00end"),
]


# ---- helpers --------------------------------------------------------------------------------------------

def pattern(at: AppTest) -> np.ndarray:
    fig = charts(at)["pattern_fig"]
    return decode(next(t for t in fig["data"] if t["type"] == "heatmap")["z"])


def ticks(at: AppTest) -> list[str]:
    """The heatmap's tick labels (at most 40 are drawn, each cut at 16 characters)."""
    return charts(at)["pattern_fig"]["layout"]["xaxis"]["ticktext"]


def labels(at: AppTest) -> list[str]:
    """Every token's full label, from the heatmap's hover data: [query label, key label] per cell, query rows."""
    fig = charts(at)["pattern_fig"]
    cells = next(t for t in fig["data"] if t["type"] == "heatmap")["customdata"]
    return [cell[1] for cell in cells[0]]


def unescaped(markdown: str) -> str:
    """What a Markdown source written by markdown_literal reads as: no backslashes, word joiners or &nbsp;."""
    return re.sub(r"\\(.)", r"\1", markdown).replace("\u2060", "").replace("&nbsp;", " ")


def shown(labels: list[str]) -> str:
    """What a visitor reads on the axis: Plotly decodes the entities; ␣ marks a space."""
    return "".join(html.unescape(label) for label in labels).replace("␣", " ")


def values(elements) -> list[str]:
    return [e.value for e in elements]


def no_errors(at: AppTest) -> None:
    assert not at.exception, values(at.exception)
    assert not at.error, values(at.error)


def check_page(at: AppTest, n_tokens: int | None = None) -> np.ndarray:
    """The app ran cleanly and shows a pattern: square, rows summing to 1, a tick label per token."""
    no_errors(at)
    z = pattern(at)
    assert z.shape[0] == z.shape[1] == len(labels(at)) >= len(ticks(at))
    assert n_tokens is None or z.shape[0] == n_tokens
    assert np.isfinite(z).all() and (z >= 0).all() and np.allclose(z.sum(axis=1), 1, atol=1e-4)
    return z


def walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from walk(child)


def markdown_sources(at: AppTest) -> list[tuple[str, str]]:
    """Every string the page renders as Markdown, as ("body", text) for text elements, alerts and headings and
    ("label", text) for labels and help of widgets, status boxes and expanders."""
    out = []
    for node in walk(at._tree):
        if isinstance(node, et.Markdown | et.AlertBase | et.HeadingBase):
            out.append(("body", node.value))
        for attr in ("label", "help"):
            value = getattr(node, attr, None)
            if isinstance(value, str):
                out.append(("label", value))
    return out


def figure_strings(fig: dict) -> list[str]:
    """Every string of a Plotly figure that Plotly renders as (a subset of) HTML, except its theme."""
    out: list[str] = []

    def collect(x, key: str = "") -> None:
        if key == "template":
            return
        if isinstance(x, dict):
            for k, v in x.items():
                collect(v, k)
        elif isinstance(x, list):
            for v in x:
                collect(v, key)
        elif isinstance(x, str):
            out.append(x)

    collect(fig)
    return out


# ---- text a visitor types or pastes -----------------------------------------------------------------------

def test_empty_or_blank_text_keeps_the_last_sentence():
    at = start(text=SENTENCE)
    good = check_page(at)
    good_ticks = ticks(at)
    for blank in ["", "   ", "\n\t \u3000\u2028\xa0"]:
        at.text_area(key="text").set_value(blank).run()
        no_errors(at)
        assert values(at.warning) == [EMPTY_WARNING + " Showing the last sentence that ran."]
        assert ticks(at) == good_ticks and np.array_equal(pattern(at), good)
    at.text_area(key="text").set_value("The capital of France is").run()
    check_page(at)
    assert not at.warning and ticks(at) != good_ticks

    fresh = start(text="   ")  # a link with a blank sentence: the first preset, and the same notice
    check_page(fresh)
    assert values(fresh.warning) == [EMPTY_WARNING]
    assert shown(ticks(fresh)) == DEFAULT_SENTENCE


def test_100000_characters_are_cut_before_tokenization_with_notices(monkeypatch):
    monkeypatch.setenv("ATTN_EXPLORER_MAX_TOKENS", "64")  # the cut itself is what is tested: keep the run small
    seen = []
    run = engine.Model.run

    def spy(self, text, *args, **kwargs):
        seen.append(len(text))
        return run(self, text, *args, **kwargs)

    monkeypatch.setattr(engine.Model, "run", spy)
    text = ("The mole dug a tunnel under the lawn. " * 3000)[:100_000]
    at = start()
    at.text_area(key="text").set_value(text).run()
    check_page(at, n_tokens=64)
    max_chars = settings.load().max_chars
    assert max_chars == 20_000 and seen and max(seen) <= max_chars  # bounded before the tokenizer saw it
    assert values(at.sidebar.info) == ["Your text has 100,000 characters; the first 20,000 are used."]
    notice = [i for i in values(at.main.info) if i.startswith("The text has")]
    assert len(notice) == 1 and re.fullmatch(r"The text has [\d,]+ tokens; the first 64 were used \(limit: 64\)\.",
                                             notice[0])
    assert app_state(at).text == text  # the visitor's text stays as typed; only the run is cut
    assert "text" not in at.query_params  # a 20,000-character link would not load through a proxy
    assert "This sentence is too long to keep in the page's link." in values(at.sidebar.caption)

    linked = start(text=text)  # the same text in a link is cut when the link is read
    check_page(linked, n_tokens=64)
    assert len(app_state(linked).text) == max_chars


def test_unusual_unicode_runs_and_every_character_stays_visible():
    at = start()
    for what, text in UNICODE:
        at.text_area(key="text").set_value(text).run()
        check_page(at)
        readable = [html.unescape(t) for t in labels(at)]
        hidden = [t for t in readable for ch in t if unicodedata.category(ch) in ("Cc", "Cf") and ch != "\u200d"]
        assert not hidden, f"{what}: invisible or reordering characters reach the labels: {hidden!r}"
        assert at.session_state.last_good_text == text, what
        assert "pred_fig_pattern_tab" in charts(at), what
    assert any("\\x00" in t for t in labels(at))  # NUL shows as its code


def test_markup_is_shown_literally_in_every_tab():
    """HTML, Markdown, LaTeX and Streamlit directives in the sentence never render: not in Plotly text (tick
    labels, hover, bars), not in any Markdown the app writes (captions, alerts, headings, labels)."""
    at = start(text=MARKUP)
    no_errors(at)
    assert shown(labels(at)) == MARKUP  # every character in the hover labels, exactly as typed
    quoted = re.compile(r"“([^”]*)”")
    tokens_quoted = 0
    for tab in (view.id for view in VIEWS):
        open_tab(at, tab)
        no_errors(at)
        assert not at.latex, tab
        for kind, source in markdown_sources(at):
            plain = re.sub(r"\\.|&nbsp;", "", source)  # what is left after the escapes is Markdown syntax
            assert not re.search(r"[<>$~^]", plain), (tab, source)
            for token in quoted.findall(plain) if kind == "body" else []:  # tokens in text are quoted “…”
                assert not re.search(r"[!-/:-@\[-`{-~]", token), (tab, source)
                tokens_quoted += 1
        for key, fig in charts(at).items():
            for text in figure_strings(fig):
                rest = re.sub(r"<br>|<extra></extra>|%\{[^}]*\}", "", text)
                assert not re.search(r"[<>$]", rest), (tab, key, text)
    assert tokens_quoted >= 2  # the query · key and Δe tabs quote tokens in their text


def test_the_link_stays_loadable_and_current(monkeypatch):
    monkeypatch.setenv("ATTN_EXPLORER_MAX_TOKENS", "32")
    at = start(text=SENTENCE, off="0.1,2.3")
    assert at.query_params["text"] == SENTENCE and at.query_params["off"] == "0.1,2.3"
    at.text_area(key="text").set_value("我" * 2_000).run()  # 2,000 characters, 18,000 once URL-encoded
    check_page(at, n_tokens=32)
    assert "text" not in at.query_params
    at.text_area(key="text").set_value("A short one").run()
    assert at.query_params["text"] == "A short one"
    open_tab(at, "interventions")
    at.button(key="heads_all_on").click().run()
    no_errors(at)
    assert "off" not in at.query_params  # no stale switches: reloading the link shows what is on screen
    again = start(**{k: at.query_params[k] for k in at.query_params})
    assert app_state(again).heads_off == frozenset() and app_state(again).text == "A short one"


# ---- models a visitor names -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory) -> Path:
    """A 2-layer random GPT-2 saved with save_pretrained (SmolLM2's tokenizer), ~1.6 M parameters."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    tokenizer = AutoTokenizer.from_pretrained(loading.resolve("smollm2-135m", lambda f, m: None))
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=2)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def llama_config(hidden: int, layers: int, mlp: int, vocab: int = 32_000) -> dict:
    return {"model_type": "llama", "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": 32,
            "num_key_value_heads": 8, "intermediate_size": mlp, "vocab_size": vocab, "max_position_embeddings": 4096}


@pytest.fixture(scope="module")
def bad_folders(tmp_path_factory, tiny_gpt2) -> dict[str, Path]:
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("bad-models")
    folders = {name: root / name for name in ("empty", "t5", "huge", "corrupt")}
    for folder in folders.values():
        folder.mkdir()
    (folders["t5"] / "config.json").write_text(json.dumps({"model_type": "t5", "d_model": 8, "num_layers": 1}))
    save_file({"shared.weight": torch.zeros(4, 8)}, str(folders["t5"] / "model.safetensors"))
    (folders["huge"] / "config.json").write_text(json.dumps(llama_config(8192, 80, 28_672)))  # a 70 B model
    shutil.copy(tiny_gpt2 / "config.json", folders["corrupt"])
    (folders["corrupt"] / "model.safetensors").write_bytes(b"\x00" * 100)
    return folders


def model_failures(folders: dict[str, Path]) -> list[tuple[str, str, str]]:
    """(what it is, the name a visitor types, what the message must say)."""
    return [
        ("unknown hub id", "no-such-model-xyz", "is out of reach (no network?) and it is not in the local cache"),
        ("private or non-existent hub id", "some-org/private-model", "out of reach"),
        ("invalid hub id", "not a valid id!!", "nor a valid Hugging Face model id"),
        ("missing folder", "/nonexistent/folder", "no folder at '/nonexistent/folder'"),
        ("folder without config.json", "/etc", "has no config.json"),
        ("empty folder", str(folders["empty"]), "has no config.json"),
        ("unsupported architecture", str(folders["t5"]), "architecture 't5' is not supported"),
        ("too large for the server", str(folders["huge"]), "over this server's limit of 1,000 M"),
        ("corrupt weights", str(folders["corrupt"]), "cannot read the weights"),
        ("a 600-character name (the field keeps 512)", "x" * 600, "is not a usable model name or folder (OSError)"),
    ]


def test_model_failures_keep_the_previous_model(bad_folders, local_server, monkeypatch):
    loads = []
    load = engine.load
    monkeypatch.setattr(engine, "load", lambda name, *a, **k: (loads.append(name), load(name, *a, **k))[1])
    at = start(model="minilm-l6", text=SENTENCE)
    before = check_page(at)
    at.selectbox(key="model_choice").set_value(state.OTHER_MODEL).run()
    for what, name, expected in model_failures(bad_folders):
        started = time.monotonic()
        at.text_input(key="custom_model").set_value(name).run()
        assert time.monotonic() - started < 30, what
        assert not at.exception, (what, values(at.exception))
        errors = [unescaped(e) for e in values(at.sidebar.error)]  # the message is Markdown-escaped
        assert len(errors) == 1 and expected in errors[0] and errors[0].endswith("Still showing minilm-l6."), \
            (what, errors)
        assert app_state(at).model == "minilm-l6", what
        assert np.array_equal(pattern(at), before), what
    tried = len(loads)
    at.radio(key="mask").set_value("causal").run()  # a rerun does not try a failed name again
    assert len(loads) == tried and "not a usable model name" in values(at.sidebar.error)[0]
    assert app_state(at).model == "minilm-l6"


def test_model_name_markup_is_escaped_in_the_message():
    at = start()
    at.selectbox(key="model_choice").set_value(state.OTHER_MODEL).run()
    at.text_input(key="custom_model").set_value("$x^2$ **b** <img src=x onerror=alert(1)> ![i](http://x/i.png)").run()
    assert not at.exception
    (message,) = values(at.sidebar.error)
    assert not re.search(r"[<>$*!\[\]]", re.sub(r"\\.", "", message))
    assert "Still showing smollm2" in message


def test_too_large_model_follows_the_server_limit(tmp_path, local_server, monkeypatch):
    folder = tmp_path / "llama-40m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(llama_config(512, 8, 1024)))  # about 34 M parameters
    at = start()
    at.selectbox(key="model_choice").set_value(state.OTHER_MODEL).run()
    monkeypatch.setenv("ATTN_EXPLORER_MAX_PARAMS_M", "10")
    at.text_input(key="custom_model").set_value(str(folder)).run()
    assert re.search(r"about \d\d M parameters, over this server's limit of 10 M\. Choose a smaller model\.",
                     unescaped(at.sidebar.error[0].value))
    monkeypatch.delenv("ATTN_EXPLORER_MAX_PARAMS_M")
    again = start(model=str(folder))  # under the default limit of 1,000 M the size passes; it has no weights
    assert not again.exception
    assert "no weights" in unescaped(again.sidebar.error[0].value)


def test_hub_failures_with_a_network(tmp_path):
    """Against a local stand-in for the hub (no internet here): a private id, a gated id, and no network at all
    each give the engine's own message, fast."""
    import http.server

    class Hub(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the name http.server calls
            code, error = (403, "GatedRepo") if "gated" in self.path else (401, "RepoNotFound")
            body = b'{"error": "Repository not found"}'
            self.send_response(code)
            self.send_header("X-Error-Code", error)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_HEAD = do_GET  # noqa: N815

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    script = (
        "import json, time, engine\n"
        "for name in ['someone/private-model', 'org/gated-model']:\n"
        "    t = time.monotonic()\n"
        "    try:\n"
        "        engine.load(name, device='cpu')\n"
        "    except Exception as err:\n"
        "        print(json.dumps([type(err).__name__, str(err), time.monotonic() - t]))\n"
    )
    endpoint = f"http://127.0.0.1:{server.server_port}"
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "hf"),
           "PYTHONPATH": str(ROOT)}

    def load_both() -> list[list]:
        out = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True,
                             timeout=120)
        return [json.loads(line) for line in out.stdout.splitlines()]

    try:
        private, gated = load_both()
    finally:
        server.shutdown()
        server.server_close()
    offline_private, offline_gated = load_both()  # no network: nothing listens at the endpoint any more
    assert private[:2] == ["ModelLoadError", "no public Hugging Face model named 'someone/private-model' "
                                             "(it may be private or misspelt)."]
    assert gated[:2] == ["ModelLoadError", "'org/gated-model' is gated on the Hugging Face hub: log in and accept "
                                           "its terms."]
    for kind, message, seconds in (offline_private, offline_gated):
        assert kind == "ModelLoadError" and "out of reach (no network?)" in message and seconds < 30
    assert all(seconds < 30 for _, _, seconds in (private, gated))


def test_hub_size_and_architecture_are_checked_before_the_weights_download(tmp_path, monkeypatch):
    """The hub lists a 70 B model's files (140 GB of weights): only its config.json is fetched before it is refused.
    (Through a fake hub with real downloads: tests/test_model_cache.py.)"""
    import huggingface_hub

    from engine import hub

    monkeypatch.setenv("ATTN_EXPLORER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(hub, "repo_files", lambda repo_id: ("0" * 40, [("config.json", 300),
                                                                       ("model.safetensors", 140 * 10**9)]))
    requested = []

    def snapshot_download(repo_id, allow_patterns=None, **kwargs):
        requested.append(list(allow_patterns or ["*"]))
        folder = tmp_path / "snapshot"
        folder.mkdir(exist_ok=True)
        (folder / "config.json").write_text(json.dumps(llama_config(8192, 80, 28_672)))
        if any("safetensors" in p or p == "*" for p in allow_patterns or ["*"]):
            (folder / "model.safetensors").write_bytes(b"\x00" * 100)  # stands for 140 GB
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    with pytest.raises(engine.ModelLoadError, match="over this server's limit"):
        engine.load("big-org/llama-70b", device="cpu", max_params=1_000_000_000)
    assert not any("*.safetensors" in patterns or "*" in patterns for patterns in requested), requested


def spy_on_remote_code(monkeypatch) -> tuple[list, list]:
    """Record every trust_remote_code that reaches transformers' loaders, and every call of the function that
    imports a checkpoint's own Python (refused): ([(loader, trust_remote_code)], [dynamic module calls])."""
    import transformers

    asked, imported = [], []
    for name in ("AutoConfig", "AutoTokenizer", "AutoModel", "AutoModelForCausalLM", "AutoModelForMaskedLM"):
        cls = getattr(transformers, name)

        def from_pretrained(*args, _name=name, _original=cls.from_pretrained, **kwargs):
            asked.append((_name, kwargs.get("trust_remote_code", "not passed")))
            return _original(*args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", from_pretrained)

    def get_class_from_dynamic_module(*args, **kwargs):
        imported.append(args)
        raise AssertionError("a checkpoint's own code was about to be imported")

    for module in [m for n, m in list(sys.modules.items()) if n.startswith("transformers") and m is not None]:
        if hasattr(module, "get_class_from_dynamic_module"):
            monkeypatch.setattr(module, "get_class_from_dynamic_module", get_class_from_dynamic_module)
    return asked, imported


def test_remote_code_never_runs(tiny_gpt2, minilm, tmp_path, monkeypatch, local_server):
    """Checkpoints that ask for their own Python (auto_map in config.json and tokenizer_config.json, a custom
    model_type, a tokenizer only transformers can read) load with the built-in classes or are refused, through the
    engine and through the app: every call into transformers says trust_remote_code=False, the loader of dynamic
    modules is never called, and the checkpoint's code never runs, whatever the environment says."""
    from engine import loading

    marker = tmp_path / "remote-code-ran"
    evil = f"open({str(marker)!r}, 'w').write('ran')\nclass Evil:\n    pass\n"

    def asking(folder: Path, model_type: str | None = None) -> Path:
        for module in ("configuration_evil", "modeling_evil", "tokenization_evil"):
            (folder / f"{module}.py").write_text(evil)
        config = json.loads((folder / "config.json").read_text())
        config["auto_map"] = {"AutoConfig": "configuration_evil.Evil", "AutoModel": "modeling_evil.Evil",
                              "AutoModelForCausalLM": "modeling_evil.Evil"}
        (folder / "config.json").write_text(json.dumps({**config, "model_type": model_type or config["model_type"]}))
        tok_config = json.loads((folder / "tokenizer_config.json").read_text())
        tok_config["auto_map"] = {"AutoTokenizer": ["tokenization_evil.Evil", None]}
        (folder / "tokenizer_config.json").write_text(json.dumps(tok_config))
        return folder

    asks = asking(Path(shutil.copytree(tiny_gpt2, tmp_path / "asks-for-code")))
    custom = asking(Path(shutil.copytree(tiny_gpt2, tmp_path / "custom-architecture")), model_type="evil")
    vocab_only = tmp_path / "vocab-only"  # MiniLM without tokenizer.json: only transformers' AutoTokenizer reads it
    shutil.copytree(loading.resolve("minilm-l6", lambda f, m: None), vocab_only,
                    ignore=shutil.ignore_patterns("tokenizer.json", "model.safetensors"))
    (vocab_only / "model.safetensors").symlink_to(loading.resolve("minilm-l6", lambda f, m: None) / "model.safetensors")
    asking(vocab_only)
    monkeypatch.setenv("ATTN_EXPLORER_TRUST_REMOTE_CODE", "1")  # not a setting: it must change nothing
    monkeypatch.setenv("TRUST_REMOTE_CODE", "1")
    asked, imported = spy_on_remote_code(monkeypatch)

    for folder, family in ((asks, "gpt2"), (custom, None), (vocab_only, "bert")):
        try:
            assert engine.load(str(folder), device="cpu").config.family == family
        except engine.EngineError as err:
            assert folder == custom and "'evil' is not supported" in str(err)
    at = start(model=str(vocab_only), text=SENTENCE)  # a link that names such a checkpoint
    check_page(at)
    assert app_state(at).model == str(vocab_only)
    np.testing.assert_allclose(pattern(at), minilm.run(SENTENCE)["pattern", 0][0].numpy(), atol=1e-5)

    assert not marker.exists() and not imported
    assert asked and all(trust is False for _, trust in asked), asked  # AutoTokenizer read vocab-only, told False
    # no setting turns remote code on (trust_forwarded is about the balancer's X-Forwarded-For, not code)
    assert not [f.name for f in dataclasses.fields(settings.Settings) if "remote" in f.name or "code" in f.name
                or ("trust" in f.name and f.name != "trust_forwarded")]


# ---- operator settings ----------------------------------------------------------------------------------

def test_settings_are_read_from_the_environment(monkeypatch):
    for name in [n for n in os.environ if n.startswith("ATTN_EXPLORER_")]:
        monkeypatch.delenv(name)
    default = settings.load()
    assert (default.max_tokens, default.max_chars, default.allow_custom_models, default.device) == \
        (settings.default_max_tokens(None), 20_000, True, None)
    assert (default.allow_local_folders, default.model_cache_bytes) == (False, 20_000_000_000)  # not on localhost
    monkeypatch.setenv("ATTN_EXPLORER_MAX_TOKENS", "256")
    monkeypatch.setenv("ATTN_EXPLORER_MAX_CHARS", "5000")
    monkeypatch.setenv("ATTN_EXPLORER_ALLOW_CUSTOM_MODELS", "off")
    monkeypatch.setenv("ATTN_EXPLORER_DEVICE", "cpu")
    monkeypatch.setenv("ATTN_EXPLORER_MAX_PARAMS_M", "200")
    s = settings.load()
    assert (s.max_tokens, s.max_chars, s.allow_custom_models, s.device, s.max_params) == \
        (256, 5000, False, "cpu", 200_000_000)
    for raw, expected in [("1", True), ("true", True), ("YES", True), ("on", True), ("0", False), ("false", False),
                          ("no", False), ("", False)]:
        monkeypatch.setenv("ATTN_EXPLORER_ALLOW_CUSTOM_MODELS", raw)
        assert settings.load().allow_custom_models is expected, raw
    assert settings.CPU_MAX_TOKENS == 4096 and settings.default_max_tokens("cuda:0") == settings.GPU_MAX_TOKENS == 8192
    default_tokens = settings.default_max_tokens(None)  # 4,096 on a CPU, 8,192 on a CUDA GPU
    for raw, expected in [("abc", default_tokens), ("", default_tokens), ("0", 1), ("-5", 1), (" 300 ", 300)]:
        monkeypatch.setenv("ATTN_EXPLORER_MAX_TOKENS", raw)
        assert settings.load().max_tokens == expected, raw


def test_limits_from_the_environment_and_from_secrets(monkeypatch):
    monkeypatch.setenv("ATTN_EXPLORER_MAX_TOKENS", "8")
    monkeypatch.setenv("ATTN_EXPLORER_MAX_CHARS", "40")
    text = "The mole dug a tunnel under the lawn and then it slept all day long"
    at = start(text=text)
    check_page(at, n_tokens=8)
    assert app_state(at).text == text[:40]  # the link's text is cut as it is read
    at.text_area(key="text").set_value(text).run()
    check_page(at, n_tokens=8)
    assert values(at.sidebar.info) == [f"Your text has {len(text)} characters; the first 40 are used."]
    assert "the first 8 were used (limit: 8)" in values(at.main.info)[0]

    monkeypatch.delenv("ATTN_EXPLORER_MAX_TOKENS")
    monkeypatch.delenv("ATTN_EXPLORER_MAX_CHARS")
    secret = new_app(text=text)
    secret.secrets["ATTN_EXPLORER_MAX_TOKENS"] = "6"  # .streamlit/secrets.toml
    check_page(secret.run(), n_tokens=6)
    monkeypatch.setenv("ATTN_EXPLORER_MAX_TOKENS", "5")  # the environment wins over secrets
    check_page(secret.run(), n_tokens=5)


def test_custom_models_off_hides_the_field_and_ignores_links(monkeypatch):
    monkeypatch.setenv("ATTN_EXPLORER_ALLOW_CUSTOM_MODELS", "0")
    loads = []
    load = engine.load
    monkeypatch.setattr(engine, "load", lambda name, *a, **k: (loads.append(name), load(name, *a, **k))[1])
    at = start(model="/etc", text=SENTENCE)
    check_page(at)
    assert at.selectbox(key="model_choice").options == [
        f"{name} — {MODEL_DESCRIPTIONS[name]}" for name in engine.EMBEDDED]
    assert not [t for t in at.text_input if t.key == "custom_model"]
    assert app_state(at).model == "smollm2-135m"
    (warning,) = values(at.sidebar.warning)
    assert unescaped(warning) == "This server offers only its embedded models: the link's model “/etc” was " \
                                        "not loaded."
    # "other…" cannot be picked (the browser sends an index into these options) and the field's state is ignored
    at.session_state["custom_model"] = "/etc"
    at.run()
    check_page(at)
    assert app_state(at).model == "smollm2-135m" and not at.sidebar.warning
    assert "/etc" not in loads
    assert app_state(start(model="minilm-l6")).model == "minilm-l6"  # the embedded models stay choosable


def test_a_device_that_does_not_exist_is_a_message_not_a_crash(tiny_gpt2, local_server, monkeypatch):
    at = start()
    at.selectbox(key="model_choice").set_value(state.OTHER_MODEL).run()
    monkeypatch.setenv("ATTN_EXPLORER_DEVICE", "no-such-device")
    at.text_input(key="custom_model").set_value(str(tiny_gpt2)).run()
    assert not at.exception
    assert "unknown device 'no-such-device'" in unescaped(at.sidebar.error[0].value)
    assert app_state(at).model == "smollm2-135m"

    st.cache_resource.clear()  # as in a fresh server process: the default model itself cannot load
    fresh = start()
    assert not fresh.exception
    assert values(fresh.error) and unescaped(fresh.error[0].value).startswith(
        "Could not load smollm2-135m: unknown device 'no-such-device'")


# ---- isolation ------------------------------------------------------------------------------------------

def test_two_sessions_with_different_settings_do_not_see_each_other(monkeypatch):
    with monkeypatch.context() as env:  # session A runs under a locked-down server's settings
        env.setenv("ATTN_EXPLORER_ALLOW_CUSTOM_MODELS", "0")
        env.setenv("ATTN_EXPLORER_MAX_TOKENS", "6")
        a = start(model="minilm-l6", text="The capital of France is Paris", mask="causal", off="1.2,3.4", layer=2)
    b = start(text=SENTENCE)
    b_pattern, b_ticks = check_page(b), ticks(b)

    with monkeypatch.context() as env:
        env.setenv("ATTN_EXPLORER_ALLOW_CUSTOM_MODELS", "0")
        env.setenv("ATTN_EXPLORER_MAX_TOKENS", "6")
        check_page(a, n_tokens=6)
        open_tab(a, "interventions")
        a.button(key="heads_all_off").click().run()
        a.session_state[state.KEYS["tab"]] = label("pattern")
        a.text_area(key="text").set_value("Something else entirely, and longer").run()
        check_page(a, n_tokens=6)
        assert "other…" not in a.selectbox(key="model_choice").options
    b.selectbox(key="model_choice").set_value(state.OTHER_MODEL).run()
    b.text_input(key="custom_model").set_value("no-such-model-xyz").run()
    b.text_input(key="custom_model").set_value("").run()

    s = app_state(b)
    assert (s.model, s.text, s.mask, s.layer, s.heads_off) == ("smollm2-135m", SENTENCE, "default", 0,
                                                               frozenset())
    assert np.array_equal(check_page(b), b_pattern) and ticks(b) == b_ticks
    a.run()
    s = app_state(a)
    assert (s.model, s.mask, s.layer, s.text) == ("minilm-l6", "causal", 2, "Something else entirely, and longer")
    assert len(s.heads_off) == 6 * 12 and not a.sidebar.error  # b's failed model is b's alone
    assert "no-such-model-xyz" not in a.session_state.failed_model
    # the shared model was not changed by a's interventions: a new session sees what b saw
    assert np.array_equal(pattern(start(text=SENTENCE)), b_pattern)


def test_sessions_running_at_once_equal_the_same_runs_alone(smollm):
    """Six sessions at once through the shared model and trace cache; two share a sentence but not the mask."""
    jobs = [
        dict(text="Concurrent session one: the mole dug", mask="none", layer=3, head=2, off="0.1,2.5"),
        dict(text="Concurrent session one: the mole dug", mask="causal", layer=3, head=2, off=""),
        dict(text="Concurrent session two, a fluffy creature", mask="default", layer=7, head=4, off="7.4"),
        dict(text="Concurrent session three 东京 🇫🇷", mask="none", layer=0, head=0, off=""),
        dict(text="Concurrent session four <b>x</b>", mask="default", layer=29, head=8, off="28.0,28.1"),
        dict(text="Concurrent session five: Paris is the capital of", mask="causal", layer=12, head=5, off="1.1"),
    ]

    def session(job: dict) -> AppTest:
        return start(**{k: v for k, v in job.items() if v != ""})

    with sessions_at_once(), ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        sessions = list(pool.map(session, jobs))
    for job, at in zip(jobs, sessions, strict=True):
        no_errors(at)
        assert app_state(at).text == job["text"] and app_state(at).mask == job["mask"]
        mask = smollm.default_head_mask()
        for item in filter(None, job["off"].split(",")):
            layer, head = map(int, item.split("."))
            mask[layer, head] = False
        causal = state.CAUSAL[job["mask"]]
        alone = smollm.run(job["text"], causal=causal, head_mask=mask, max_tokens=settings.load().max_tokens)
        expected = alone["pattern", job["layer"]][job["head"]].numpy()
        assert pattern(at).shape == expected.shape
        assert np.allclose(pattern(at), expected, atol=1e-6, rtol=0), job
