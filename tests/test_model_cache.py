"""The disk budget for downloaded hub models: least recently used out, never a model in use, never an embedded model,
and a model larger than the whole budget refused before anything is written.

The end-to-end tests run the real engine and huggingface_hub against a fake hub (tests/fake_hub.py) serving small
random GPT-2 checkpoints, in a fresh process each (tests/hub_scenarios.py): huggingface_hub reads its endpoint once,
at import. The unit tests drive engine.model_cache directly on folders laid out like Hugging Face's cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from engine import loading
from engine.errors import DiskBudgetExceeded
from engine.hub import plan
from engine.model_cache import ModelCache, disk_bytes

ROOT = Path(__file__).resolve().parent.parent


# ---- small checkpoints served by the fake hub -----------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory) -> Path:
    """A 2-layer random GPT-2 with SmolLM2's tokenizer, saved with save_pretrained: about 8.6 MB of files."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    tokenizer = AutoTokenizer.from_pretrained(loading.resolve("smollm2-135m", lambda f, m: None))
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=2)) \
        .save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def repos(tiny: Path, tmp: Path, names: list[str]) -> dict[str, str]:
    out = {}
    for name in names:
        folder = tmp / "repos" / name.replace("/", "--")
        shutil.copytree(tiny, folder)
        out[name] = str(folder)
    return out


def scenario(name: str, **args) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, str(ROOT / "tests" / "hub_scenarios.py"), json.dumps({"scenario": name,
                                                                                                  **args})],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.splitlines()[-1])


def test_least_recently_used_download_goes_and_the_embedded_models_stay(tiny_repo, tmp_path, monkeypatch):
    served = repos(tiny_repo, tmp_path, ["org/a", "org/b", "org/c"])
    size = disk_bytes(tiny_repo)
    big = tmp_path / "repos" / "org--big"
    big.mkdir()
    shutil.copy(tiny_repo / "config.json", big)
    with open(big / "model.safetensors", "wb") as f:
        f.truncate(4 * size)  # sparse: 4 small models' worth of bytes, no disk used
    huge = tmp_path / "repos" / "org--70b"
    shutil.copytree(tiny_repo, huge)
    (huge / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 8192, "num_hidden_layers": 80, "num_attention_heads": 64,
        "num_key_value_heads": 8, "intermediate_size": 28_672, "vocab_size": 32_000, "max_position_embeddings": 4096}))
    cache = tmp_path / "cache"
    cache.mkdir()
    embedded = loading.resolve("smollm2-135m", lambda f, m: None)  # the verified dequantised weights
    (cache / embedded.name).symlink_to(embedded, target_is_directory=True)  # beside the downloads, as in use

    seen = scenario("lru", repos={**served, "org/big": str(big), "org/70b": str(huge)}, cache=str(cache),
                    budget_gb=2.5 * size / 1e9)

    listing = [(p.name, p.stat().st_size) for p in tiny_repo.iterdir()]
    files_per_model = len(plan(listing, weights=True).files)  # not chat_template.jinja: the engine never reads it
    a, b, a_again, c = (seen[key] for key in ("0:org/a", "1:org/b", "2:org/a", "3:org/c"))
    assert a == ["ok", ["org/a"], files_per_model]
    assert b == ["ok", ["org/a", "org/b"], 2 * files_per_model]
    assert a_again == ["ok", ["org/a", "org/b"], 2 * files_per_model]  # from the cache: nothing downloaded
    assert c == ["ok", ["org/a", "org/c"], 3 * files_per_model]  # b was used least recently, not a
    message, kept, big_files, big_folder = seen["big"]
    assert message.startswith("DiskBudgetExceeded: org/big needs ") and "more than this server's whole disk " \
        "budget for downloaded models" in message and message.endswith("Choose a smaller model.")
    assert kept == ["org/a", "org/c"] and big_files == [] and not big_folder  # refused before any file
    message, files = seen["70b"]  # within the disk budget, over the parameter limit: refused from its config alone
    assert "has about 68,713 M parameters" in message and "over this server's limit of 1,000 M" in message
    assert files == ["config.json"]
    # the embedded models: SmolLM2's cache beside the downloads is untouched and still verified, MiniLM's package too
    assert (cache / embedded.name).is_symlink() and loading.cache_is_valid(cache / embedded.name)
    monkeypatch.setenv("ATTN_EXPLORER_CACHE", str(cache))
    assert loading.resolve("smollm2-135m", lambda f, m: None) == cache / embedded.name
    assert (loading.resolve("minilm-l6", lambda f, m: None) / "config.json").is_file()


def test_a_model_in_use_is_never_removed(tiny_repo, tmp_path):
    served = repos(tiny_repo, tmp_path, ["org/slow", "org/other"])
    size = disk_bytes(tiny_repo)
    seen = scenario("in_use", repos=served, cache=str(tmp_path / "cache"), budget_gb=1.5 * size / 1e9,
                    slow={"org/slow": 1.0})
    assert seen["during"].startswith("DiskBudgetExceeded: the server's disk space for downloaded models") and \
        "taken by models that other visitors are loading right now" in seen["during"]
    assert seen["slow_present_during"] and seen["slow"] == "ok"  # its download finished and it loaded
    assert seen["after"] == "ok" and seen["entries"] == ["org/other"]  # no longer in use: removed for the new one


# ---- the budget's bookkeeping, without a hub ---------------------------------------------------------

def fake_repo(root: Path, name: str, n_bytes: int) -> str:
    """A repository laid out like Hugging Face's cache: one blob and a snapshot link to it."""
    folder = root / f"models--org--{name}"
    (folder / "blobs").mkdir(parents=True)
    (folder / "snapshots" / "abc").mkdir(parents=True)
    (folder / "blobs" / "0123").write_bytes(b"\x00" * n_bytes)
    (folder / "snapshots" / "abc" / "model.safetensors").symlink_to(folder / "blobs" / "0123")
    return folder.name


def test_links_count_once_and_lru_order_decides(tmp_path):
    cache = ModelCache(tmp_path, budget_bytes=3_000)
    names = [fake_repo(tmp_path, n, 1_000) for n in ("x", "y", "z")]
    for name in names:
        cache.touch(name)
    assert [e.disk_bytes for e in cache.entries()] == [1_000] * 3
    cache.touch(names[0])  # x used again: y is now the least recently used
    assert cache.reserve("models--org--new", 1_000) == [names[1]]
    assert not (tmp_path / names[1]).exists() and (tmp_path / names[0]).exists()
    assert not list(tmp_path.glob(".removing-*"))


def test_a_repository_in_use_is_counted_in_full_and_kept(tmp_path):
    cache = ModelCache(tmp_path, budget_bytes=2_500)
    busy = fake_repo(tmp_path, "busy", 200)  # a download that has only begun: 200 of 1,000 bytes
    idle = fake_repo(tmp_path, "idle", 1_000)
    cache.touch(busy, planned_bytes=1_000)
    cache.touch(idle)
    held, release = threading.Event(), threading.Event()

    def use() -> None:
        with cache.using(busy):
            held.set()
            release.wait(10)

    user = threading.Thread(target=use)
    user.start()
    held.wait(10)
    try:
        assert cache.reserve("models--org--new", 1_000) == [idle]  # 1,000 (busy, planned) + 1,000 fits after
        with pytest.raises(DiskBudgetExceeded, match="other visitors are loading"):
            cache.reserve("models--org--huge", 2_400)  # only the busy one is left (as 1,000), and it cannot go
        assert (tmp_path / busy).exists()
    finally:
        release.set()
        user.join()
    assert cache.reserve("models--org--huge", 2_400) == [busy]  # no longer in use: its 200 bytes go


def test_the_download_plan_counts_only_what_is_fetched():
    files = [("config.json", 10), ("tokenizer.json", 20), ("model.safetensors", 1_000), ("pytorch_model.bin", 900),
             ("flax_model.msgpack", 800), ("onnx/model.onnx", 700), ("README.md", 5)]
    assert plan(files, weights=False).n_bytes == 10
    assert plan(files, weights=True).n_bytes == 1_030  # safetensors present: no .bin, no flax, no onnx
    without = [f for f in files if not f[0].endswith(".safetensors")]
    assert plan(without, weights=True).n_bytes == 930  # the .bin instead
