"""Local folders only where the operator allows them: on by default only when the server listens on a loopback
address; elsewhere every path, existing or not, gets one message and nothing is looked at or loaded.

Through the real app.py (AppTest) with Streamlit's own `server.address` option, and through the engine.
"""

from __future__ import annotations

import os
import re
import shutil

import pytest
from apptest_tools import start
from streamlit import config as st_config

import engine
from components import settings
from engine import hub, loading

pytestmark = pytest.mark.slow
SENTENCE = "The mole dug a tunnel under the lawn"
PATHS = ["/etc", "/root", "/nonexistent/folder", "~root/.ssh", "./models", "../../etc", "C:\\models\\x", "a/b/c"]
WATCHED = {os.path.normpath(os.path.abspath(os.path.expanduser(p))) for p in PATHS} | {
    os.path.normpath(p) for p in PATHS}  # each path as given and as the disk would see it
REFUSED = "local folders are not available on this server: choose an embedded model or a Hugging Face id."


@pytest.fixture
def address():
    """Set Streamlit's server.address for one test (as `--server.address` would); restored afterwards."""
    before = st_config.get_option("server.address")

    def set_address(value: str | None) -> None:
        st_config.set_option("server.address", value)

    yield set_address
    st_config.set_option("server.address", before)


@pytest.fixture
def no_operator_settings(monkeypatch):
    for name in [n for n in os.environ if n.startswith("ATTN_EXPLORER_")]:
        monkeypatch.delenv(name)


def unescaped(markdown: str) -> str:
    return re.sub(r"\\(.)", r"\1", markdown).replace("\u2060", "").replace("&nbsp;", " ")


@pytest.mark.parametrize(("value", "local"), [
    ("localhost", True), ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True),
    (" LOCALHOST ", True), (None, False), ("", False), ("0.0.0.0", False), ("::", False), ("192.168.1.5", False),
    ("example.org", False)])
def test_local_folders_default_to_on_only_for_a_loopback_address(value, local, address, no_operator_settings,
                                                                 monkeypatch):
    address(value)
    assert settings.server_is_local() is local
    assert settings.load().allow_local_folders is local
    monkeypatch.setenv("ATTN_EXPLORER_ALLOW_LOCAL_FOLDERS", "0" if local else "1")  # the operator's word wins
    assert settings.load().allow_local_folders is not local
    monkeypatch.setenv("ATTN_EXPLORER_ALLOW_CUSTOM_MODELS", "0")  # no custom models at all: no folders either
    assert settings.load().allow_local_folders is False


def test_load_options_carry_the_policy(address, no_operator_settings, monkeypatch):
    address("0.0.0.0")
    monkeypatch.setenv("ATTN_EXPLORER_MODEL_CACHE_GB", "2.5")
    assert settings.load().load_options() == {"device": None, "max_params": 1_000_000_000, "allow_hub": True,
                                              "allow_local_folders": False, "model_cache_bytes": 2_500_000_000}
    for raw in ("abc", "0", "-3", "inf", "nan"):
        monkeypatch.setenv("ATTN_EXPLORER_MODEL_CACHE_GB", raw)
        assert settings.load().model_cache_bytes == 20_000_000_000, raw


@pytest.fixture
def spies(monkeypatch) -> dict[str, list]:
    """Record every stat of a path in seen["watch"] (or of a file directly in it), and every config, weights or
    hub read."""
    seen: dict = {"watch": set(WATCHED), "stat": [], "read_config": [], "read_weights": [], "hub": []}
    stat = os.stat

    def spy_stat(path, *args, **kwargs):
        text = os.path.normpath(os.fsdecode(path)) if isinstance(path, str | bytes | os.PathLike) else ""
        if text in seen["watch"] or os.path.dirname(text) in seen["watch"]:
            seen["stat"].append(text)
        return stat(path, *args, **kwargs)

    for name in ("read_config", "read_weights"):
        original = getattr(loading, name)
        monkeypatch.setattr(loading, name, lambda *a, _n=name, _f=original, **k: (seen[_n].append(a), _f(*a, **k))[1])
    checkout = hub.checkout
    monkeypatch.setattr(hub, "checkout", lambda *a, **k: (seen["hub"].append(a), checkout(*a, **k))[1])
    monkeypatch.setattr(os, "stat", spy_stat)
    return seen


def test_on_a_public_server_every_path_gets_one_message_and_nothing_is_loaded(tmp_path, address, spies,
                                                                              no_operator_settings):
    """Default settings on a non-local address: /etc, /root, a path that does not exist and even a folder holding
    a loadable model give the same message; nothing on the disk is looked at; the previous model stays."""
    model_folder = tmp_path / "a-real-model"
    shutil.copytree(loading.resolve("minilm-l6", lambda f, m: None), model_folder)  # loadable where folders are on
    spies["watch"].add(str(model_folder))
    address("0.0.0.0")
    at = start(text=SENTENCE)
    assert not at.exception and at.session_state.model == "smollm2-135m"
    for name in ("stat", "read_config", "read_weights", "hub"):  # from here on: only what the visitor's names cause
        spies[name].clear()
    at.selectbox(key="model_choice").set_value("other…").run()
    assert at.text_input(key="custom_model").label == "Hugging Face id"  # the field does not offer folders
    reasons = {}
    for path in [*PATHS, str(model_folder)]:
        at.text_input(key="custom_model").set_value(path).run()
        assert not at.exception, path
        (message,) = [unescaped(e.value) for e in at.sidebar.error]
        prefix, suffix = f"Could not load {path}: ", " Still showing smollm2-135m."
        assert message.startswith(prefix) and message.endswith(suffix), message
        reasons[path] = message[len(prefix):-len(suffix)]
        assert at.session_state.model == "smollm2-135m"
    assert set(reasons.values()) == {REFUSED}, reasons
    linked = start(model="/etc", text=SENTENCE)  # the same through a link
    assert [unescaped(e.value) for e in linked.sidebar.error] == [f"Could not load /etc: {REFUSED} Still showing "
                                                                 "smollm2-135m."]
    assert linked.session_state.model == "smollm2-135m"
    assert spies["stat"] == [] and spies["read_config"] == [] and spies["read_weights"] == [] and spies["hub"] == []


def test_on_a_localhost_server_folders_load_with_their_own_messages(tmp_path, address, no_operator_settings):
    model_folder = tmp_path / "a-real-model"
    shutil.copytree(loading.resolve("minilm-l6", lambda f, m: None), model_folder)
    address("127.0.0.1")
    at = start(text=SENTENCE)
    at.selectbox(key="model_choice").set_value("other…").run()
    assert at.text_input(key="custom_model").label == "Hugging Face id or local folder"
    expected = {"/etc": "has no config.json", "/nonexistent/folder": "no folder at '/nonexistent/folder'"}
    for path, words in expected.items():
        at.text_input(key="custom_model").set_value(path).run()
        assert words in unescaped(at.sidebar.error[0].value), path
    at.text_input(key="custom_model").set_value(str(model_folder)).run()
    assert not at.sidebar.error and at.session_state.model == str(model_folder)


def test_the_engine_enforces_the_policy_where_names_become_paths(tmp_path, spies):
    """engine.load itself refuses paths when told to, whatever the caller: hub ids still go to the hub, embedded
    names still load, and a name that is neither a path nor a valid id is said to be invalid."""
    (tmp_path / "config.json").write_text("{}")
    spies["watch"].add(str(tmp_path))
    for path in [*PATHS, str(tmp_path)]:
        with pytest.raises(engine.NotAllowed) as err:
            engine.load(path, device="cpu", allow_local_folders=False)
        assert str(err.value) == REFUSED, path
    assert spies["stat"] == [] and spies["read_config"] == []
    with pytest.raises(engine.ModelLoadError) as err:
        engine.load("not a valid id!!", device="cpu", allow_local_folders=False)
    assert str(err.value) == ("'not a valid id!!' is neither an embedded model (smollm2-135m, minilm-l6) nor a valid "
                              "Hugging Face model id (like 'gpt2' or 'org/name').")
    with pytest.raises(engine.ModelLoadError, match="out of reach"):  # offline here: the hub is asked, not the disk
        engine.load("etc/passwd", device="cpu", allow_local_folders=False)
    assert len(spies["hub"]) == 1 and spies["stat"] == []
    with pytest.raises(engine.NotAllowed, match="only its embedded models"):
        engine.load("gpt2", device="cpu", allow_hub=False)
    assert engine.load("minilm-l6", device="cpu", allow_local_folders=False, allow_hub=False).config.n_layers == 6
    with pytest.raises(engine.ModelLoadError, match="has no config.json"):  # folders allowed (the default) ...
        engine.load("/etc", device="cpu")
    assert "/etc" in spies["stat"]  # ... the spy sees the disk looked at
