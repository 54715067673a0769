"""The README's notebook example, run as written: it must not go stale."""

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
