"""The README's set-up and notebook example, run as written: they must not go stale."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest

pytestmark = pytest.mark.slow
README = Path(__file__).resolve().parent.parent / "README.md"


def notebook_example() -> str:
    """The first ```python block of the README's "Use it from a notebook" section."""
    section = README.read_text().split("\n## Use it from a notebook\n", 1)[1].split("\n## ", 1)[0]
    (code, *_) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return code


def test_the_notebook_example_runs_and_draws_the_pattern(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    names: dict = {}
    exec(compile(notebook_example(), "README.md", "exec"), names)
    fig, trace = names["fig"], names["trace"]
    assert isinstance(fig, go.Figure) and (tmp_path / "pattern.html").stat().st_size > 10_000
    z = np.asarray(fig.data[0].z)  # the heatmap is layer 3, head 0 of the run, query rows
    np.testing.assert_array_equal(z, trace["pattern", 3][0].numpy())
    assert trace.tokens[-1] == " is" and len(fig.layout.xaxis.ticktext) == trace.n_tokens


def test_the_attention_explorer_command_starts_the_app_from_any_directory(tmp_path):
    """`attention-explorer` (components.launch) serves app.py with the project's .streamlit/config.toml, wherever
    it is started from."""
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    from tests.browser import ROOT, free_port

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "components.launch", "--server.port", str(port), "--server.address", "127.0.0.1"]
    with (tmp_path / "log").open("w") as log:
        server = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as answer:
                        assert answer.status == 200
                        break
                except OSError:
                    assert server.poll() is None, (tmp_path / "log").read_text()
                    assert time.monotonic() < deadline, (tmp_path / "log").read_text()
                    time.sleep(0.5)
        finally:
            server.terminate()
            server.wait(timeout=30)
    assert "Traceback" not in (tmp_path / "log").read_text()
