"""Replicas that start together on an empty weight cache: three processes load SmolLM2 at the same moment,
one dequantises the GGUF, the others wait for it, and all three use the same valid cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import loading
from tests.browser import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.cluster, pytest.mark.timeout(300)]
PROCESSES = 3

# Each process imports the engine, says "ready", waits for "go" on stdin (so all three reach the cache at
# the same moment, whatever their import times), loads the model and runs one sentence.
CHILD = """
import json, sys
import engine
messages = []
print("ready", flush=True)
sys.stdin.readline()
model = engine.load("smollm2-135m", device="cpu", progress=lambda fraction, message: messages.append(message))
trace = model.run("The capital of France is")
print(json.dumps({"messages": messages, "folder": model.source,
                  "top": int(trace.logits[-1].argmax())}), flush=True)
"""


def test_three_processes_start_at_once_on_an_empty_weight_cache(tmp_path):
    root = tmp_path / "cache"
    env = {**os.environ, "ATTN_EXPLORER_CACHE": str(root), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": "1"}
    children = [subprocess.Popen([sys.executable, "-c", CHILD], cwd=ROOT, env=env, text=True, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(PROCESSES)]
    try:
        for child in children:
            assert child.stdout.readline().strip() == "ready", child.stderr.read()[-3000:]
        started = time.monotonic()
        for child in children:  # all at once
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [child.communicate(timeout=240) for child in children]
        elapsed = time.monotonic() - started
    finally:
        for child in children:
            child.kill() if child.poll() is None else None

    for child, (_, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err[-3000:]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    built = [r for r in results if any("dequantis" in m for m in r["messages"])]
    waited = [r for r in results if any("waiting" in m for m in r["messages"])]
    print(f"{PROCESSES} processes loaded the model in {elapsed:.1f} s; {len(built)} built the cache, "
          f"{len(waited)} waited for it")
    assert len(built) == 1, [r["messages"] for r in results]  # the GGUF was dequantised once
    assert len(waited) == PROCESSES - 1
    folders = {r["folder"] for r in results}
    assert len(folders) == 1 and loading.cache_is_valid(Path(folders.pop()))
    assert len({r["top"] for r in results}) == 1  # the same weights: the same prediction
    leftovers = [p.name for p in root.iterdir() if p.name.startswith(".")]
    assert not leftovers, f"temporary build folders left behind: {leftovers}"
