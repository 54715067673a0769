"""A tiny checkpoint of every family loaded through the app (a local folder on a localhost server): every tab
shows without an exception, and the pattern tab draws the model's pattern."""

from __future__ import annotations

import numpy as np
import pytest
from apptest_tools import open_tab, start
from families import CASES, build
from test_robustness import check_page, no_errors

import engine
from components.views.registry import VIEWS

pytestmark = pytest.mark.slow
TEXT = "The mole dug a tunnel under the lawn and the gardener was furious"


@pytest.mark.parametrize("case", [c for c in CASES if c != "gpt_neox_sequential"])
def test_every_tab_shows_a_tiny_checkpoint_of_each_family(case, tmp_path, local_server):
    build(case, tmp_path)
    at = start(model=str(tmp_path), text=TEXT, layer=1, head=1)  # layer 1 has a window where the family has one
    z = check_page(at)
    trace = engine.load(str(tmp_path), device="cpu").run(TEXT)
    assert np.allclose(z, trace["pattern", 1, 1].numpy(), atol=1e-5)
    for view in VIEWS:
        open_tab(at, view.id)
        no_errors(at)
