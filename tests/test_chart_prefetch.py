"""The empty chart a session's first run sends before app.py's imports (components/chart_prefetch.py). It is built
while the server's warm start may be importing pandas in another thread; Plotly's checks then met a half-made
pandas module and the page failed (found by a fresh clone's soak test). Each case runs in a fresh interpreter,
where pandas is not imported yet."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = """
import sys, threading, time
sys.path.insert(0, {root!r})
import numpy  # the server has it (Streamlit imports it); pandas it imports only when asked
import plotly.graph_objects
from components import chart_prefetch
importing = threading.Thread(target=lambda: __import__("pandas"))
importing.start()  # as the warm start does, while the page builds its first figure
while "pandas" not in sys.modules:  # the import has begun: pandas is there, half made (it takes ~0.3 s)
    time.sleep(0.0005)
figure = chart_prefetch.{build}
importing.join()
print(len(figure.data), figure.layout.height)
"""


@pytest.mark.parametrize("trial", range(3))
def test_the_empty_chart_is_built_while_another_thread_imports_pandas(trial):
    done = subprocess.run([sys.executable, "-c", PROGRAM.format(root=str(ROOT), build="empty_figure()")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.split() == ["1", "10"], done.stderr[-2000:]


def test_the_race_it_avoids_is_real():
    """The same figure built without waiting for the import fails: the guard above is what makes it work."""
    done = subprocess.run([sys.executable, "-c", PROGRAM.format(
        root=str(ROOT), build="go.Figure(chart_prefetch.EMPTY)").replace(
        "import plotly.graph_objects", "import plotly.graph_objects as go")], capture_output=True, text=True,
        timeout=120)
    assert done.returncode != 0 and "partially initialized module 'pandas'" in done.stderr, done.stderr[-2000:]
