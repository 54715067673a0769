"""The Compare view in a real browser: `streamlit run app.py` driven in headless Chromium.

On the mole presets the view draws the attention rows, the head distances, the similarity and the patching map
(screenshots compare.png and compare-patching.png, in docs/screenshots when ATTN_EXPLORER_SHOTS=docs/screenshots); a
click on a cell of the map makes that patched run the app's run (the caption at the top and the link say so), and
the map takes every head on request. Texts holding
`<img src=x onerror=alert(1)>` and `**bold**` show character for character, create no element, open no dialog.
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

import pytest

from components import content
from tests.browser import ROOT, chromium, hover_text, record_dialogs, wait_for_state

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]
SHOTS = Path(os.environ.get("ATTN_EXPLORER_SHOTS") or ROOT / "artifacts" / "screenshots")
FIRST_LOAD_MS = 180_000  # a clean machine dequantises SmolLM2 once (~30 s) before the first figure
UPDATE_MS = 60_000
XSS = "<img src=x onerror=alert(1)>"
TEXT_A = f"{XSS} **bold** the furry mole"
TEXT_B = "In chemistry **bold** the unit is the mole"

# What a visitor sees of the Compare view: tick text of both attention rows, the map's cells, the top caption.
JS_STATE = """() => {
  const plot = key => document.querySelector(`.st-key-${key} .js-plotly-plot`);
  const a = plot('compare_row_a'), b = plot('compare_row_b'), map = plot('compare_map');
  if (!a || !b || !map || !a._fullData || !b._fullData || !map._fullData) return null;
  const ticks = p => Array.from(p.querySelectorAll('.xtick text'), t => t.textContent);
  return {
    ticksA: ticks(a), ticksB: ticks(b),
    cells: map._fullData[1].customdata.length,
    captions: Array.from(document.querySelectorAll('[data-testid="stCaptionContainer"]'), c => c.textContent),
    running: !!document.querySelector('[data-testid="stStatusWidget"]'),
  };
}"""

# The page position of a cell of the effect map (x: head, -1 = all heads; y: layer).
JS_CELL = """([x, y]) => {
  const plot = document.querySelector('.st-key-compare_map .js-plotly-plot');
  const box = plot.querySelector('.nsewdrag').getBoundingClientRect(), L = plot._fullLayout;
  return {x: box.left + L.xaxis.l2p(x), y: box.top + L.yaxis.l2p(y)};
}"""


@pytest.fixture
def page(app_server, tmp_path):
    with chromium(tmp_path / "profile", viewport={"width": 1440, "height": 1800}) as page:
        page.dialogs = record_dialogs(page)
        yield page


def wait_until(page, predicate_js: str, timeout: int = UPDATE_MS) -> dict:
    """Wait until the page has finished a run and the Compare view's state satisfies `predicate_js` (over `s`)."""
    return wait_for_state(page, JS_STATE, predicate_js, timeout)


def test_mole_presets_and_a_click_on_the_map_patches_the_apps_run(page, app_server):
    url, log = app_server
    page.goto(f"{url}/?tab=compare&layer=27&head=1")  # on SmolLM2, head 27.1 carries much of the difference
    first = wait_until(page, "s.ticksA.some(t => t.includes('mole')) && s.cells > 30", timeout=FIRST_LOAD_MS)
    assert any("mole" in t for t in first["ticksB"])
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "compare.png"))
    assert (SHOTS / "compare.png").stat().st_size < 400_000
    page.locator(".st-key-compare_map").scroll_into_view_if_needed()

    # click "layer 0, all heads": the app's run becomes B with that patch
    cell = page.evaluate(JS_CELL, [-1, 0])
    page.mouse.click(cell["x"], cell["y"])
    patched = wait_until(page, "s.captions.some(c => c.includes('all 9 heads of layer 0 patched'))")
    assert any("Patched run: all 9 heads of layer 0 carry their z" in c.replace("\u2060", "")  # word joiners
               for c in patched["captions"])
    query = urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)
    assert query["patch"] == [",".join(f"0.{h}" for h in range(9))]
    assert query["text"] == [content.COMPARE_PRESETS["mole_chemistry"]["b"][1]]  # B, the preset's default

    # every head of every layer, on request: 30 layer cells and 270 head cells
    page.locator(".st-key-compare_all").get_by_text("Sweep all 270 heads", exact=False).click()
    wait_until(page, "s.cells === 300")
    page.locator(".st-key-compare_map").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "compare-patching.png"))
    assert (SHOTS / "compare-patching.png").stat().st_size < 400_000
    assert urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)["compare.all"] == ["1"]
    page.get_by_role("button", name="Clear the patch").click()
    wait_until(page, "!s.captions.some(c => c.includes('heads of layer 0 patched'))")
    assert "patch" not in urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)
    assert page.dialogs == []
    assert "Traceback" not in log.read_text()


def test_html_like_texts_stay_literal_in_the_compare_view(page, app_server):
    url, log = app_server
    query = urllib.parse.urlencode({"tab": "compare", "compare.a": TEXT_A, "compare.b": TEXT_B})
    page.goto(f"{url}/?{query}")
    shown = wait_until(page, "s.ticksA.some(t => t.includes('<'))", timeout=FIRST_LOAD_MS)
    assert "".join(shown["ticksA"]).replace("␣", " ") == TEXT_A
    assert "".join(shown["ticksB"]).replace("␣", " ") == TEXT_B
    assert page.locator('img[src="x"]').count() == 0
    assert page.locator(".st-key-compare_row_a strong, .st-key-compare_row_b strong").count() == 0
    assert page.locator(".st-key-compare_a_mole_chemistry textarea").input_value() == TEXT_A

    # hover the first key of A's row: "<" as typed
    assert "key 0: <" in hover_text(page, "compare_row_a", 0, 0.5, UPDATE_MS, px=3)
    # an image that fails to load fires its onerror handler: once a probe image made now has failed, one that the
    # markup would have created earlier had its chance to fire too
    assert page.evaluate("() => new Promise(done => { const probe = new Image(); probe.onerror = () => done(true);"
                         " probe.src = 'x'; })")
    assert page.dialogs == []
    assert "Traceback" not in log.read_text()
