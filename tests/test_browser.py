"""The real app in a real browser: `streamlit run app.py` on a free localhost port, driven in headless Chromium.

A visitor types a sentence, switches the mask and the head, and sees the heatmap and the prediction panel follow;
saves a figure as SVG with its camera button; a pasted `<img src=x onerror=alert(1)>` shows as text and runs
nothing. The toolbar offers visitors no "Deploy" button. Screenshots go to artifacts/screenshots/
(ignored by git); ATTN_EXPLORER_SHOTS=docs/screenshots refreshes the README's.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.browser import ROOT, chromium, hover_text, record_dialogs, wait_for_state

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]
SHOTS = Path(os.environ.get("ATTN_EXPLORER_SHOTS") or ROOT / "artifacts" / "screenshots")
FIRST_LOAD_MS = 180_000  # a clean machine dequantises SmolLM2 once (~30 s) before the first heatmap
UPDATE_MS = 60_000
SENTENCE = "The mole dug a tunnel under the lawn"
XSS = "<img src=x onerror=alert(1)>"

# The pattern heatmap, the prediction bars, and what a visitor sees of them (SVG text of the ticks).
JS_STATE = """() => {
  const plot = key => document.querySelector(`.st-key-${key} .js-plotly-plot`);
  const pattern = plot('pattern_fig'), pred = plot('pred_fig_pattern_tab');
  if (!pattern || !pred || !pattern._fullData || !pred._fullData) return null;
  const heat = pattern._fullData.find(t => t.type === 'heatmap');  // decoded data (typed arrays)
  return {
    z: Array.from(heat.z, row => Array.from(row)),
    ticks: Array.from(pattern.querySelectorAll('.xtick text'), t => t.textContent),
    bars: pred._fullData.map(t => Array.from(t.x)),
    barTicks: Array.from(pred.querySelectorAll('.ytick text'), t => t.textContent),
    title: Array.from(document.querySelectorAll('h3'), h => h.textContent).find(t => t.startsWith('Attention pattern')),
    running: !!document.querySelector('[data-testid="stStatusWidget"]'),
  };
}"""


@pytest.fixture
def page(app_server, tmp_path):
    app_url, _ = app_server
    with chromium(tmp_path / "profile") as page:
        page.dialogs = record_dialogs(page)
        page.goto(app_url)
        yield page


def wait_until(page, predicate_js: str, timeout: int = UPDATE_MS) -> dict:
    """Wait until the page has finished a run and JS_STATE satisfies `predicate_js` (a body over `s`)."""
    return wait_for_state(page, JS_STATE, predicate_js, timeout)


def submit_text(page, text: str) -> None:
    box = page.locator(".st-key-text textarea")
    box.click()
    box.press("ControlOrMeta+a")
    page.keyboard.insert_text(text)  # what a paste does: one input event with the whole string
    box.press("ControlOrMeta+Enter")


def upper_triangle(z: list[list[float]]) -> float:
    return sum(v for i, row in enumerate(z) for j, v in enumerate(row) if j > i)


def camera_options(page, key: str) -> dict:
    """What the camera button of the figure under `key` saves (plotly's toImageButtonOptions)."""
    return page.evaluate(f"() => document.querySelector('.st-key-{key} .js-plotly-plot')._context.toImageButtonOptions")


def save_with_camera(page, key: str, tmp_path: Path) -> Path:
    """Click the camera button of the figure under `key` (it shows on hover) and return the saved file."""
    plot = page.locator(f".st-key-{key} .js-plotly-plot")
    plot.hover()
    with page.expect_download(timeout=UPDATE_MS) as download:
        plot.locator('.modebar-btn[data-title^="Download plot"]').click()
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    return path


def screenshot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    page.screenshot(path=str(path))
    assert path.stat().st_size < 400_000, f"{path} is {path.stat().st_size:,} bytes"
    return path


def test_sentence_mask_and_head_update_the_views_and_markup_stays_text(page, app_server, tmp_path):
    first = wait_until(page, "s.ticks.length > 3", timeout=FIRST_LOAD_MS)
    assert first["title"] == "Attention pattern · layer 0, head 0"
    assert page.locator('[data-testid="stAppDeployButton"]').count() == 0  # no "Deploy" for visitors
    assert page.get_by_role("button", name="Deploy").count() == 0

    # a new sentence: new tokens on the heatmap's axis, a new prediction
    submit_text(page, SENTENCE)
    typed = wait_until(page, "s.ticks.some(t => t.includes('mole'))")
    assert len(typed["z"]) == len(typed["ticks"]) > 5
    assert upper_triangle(typed["z"]) == 0  # SmolLM2 is causal: nothing above the diagonal
    assert typed["bars"] != first["bars"]

    # mask "none": the upper triangle fills in and the prediction panel compares with the unmodified run
    page.locator(".st-key-mask").get_by_text("none", exact=True).click()
    unmasked = wait_until(page, "s.z.some((row, i) => row.some((v, j) => j > i && v > 0))")
    assert upper_triangle(unmasked["z"]) > 0.1
    assert len(unmasked["bars"]) == 2 and unmasked["bars"] != typed["bars"]  # unmodified vs with intervention
    assert page.get_by_text("An intervention is active").is_visible()

    # head 0 -> 1 with the keyboard on the sidebar slider
    page.locator('.st-key-head input[type="range"]').press("ArrowRight")
    head1 = wait_until(page, "s.title === 'Attention pattern · layer 0, head 1'")
    assert head1["z"] != unmasked["z"]
    assert head1["ticks"] == unmasked["ticks"]
    screenshot(page, "explorer.png")

    # figures for a paper: PNG at 3,000 pixels by default; switched to SVG, the camera button saves a vector file
    assert camera_options(page, "pattern_fig") == {"format": "png", "filename": "attention-explorer-pattern_fig",
                                                   "width": 1000, "height": 700, "scale": 3}
    page.locator(".st-key-figure_format").get_by_text("SVG", exact=True).click()
    page.wait_for_function(  # the run is over and the one chart left (a redrawn chart replaces the old) saves SVG
        "() => { const plots = document.querySelectorAll('.st-key-pattern_fig .js-plotly-plot');"
        " return !document.querySelector('[data-testid=\"stStatusWidget\"]') && plots.length === 1"
        " && plots[0]._context?.toImageButtonOptions?.format === 'svg'; }", timeout=UPDATE_MS, polling=250)
    saved = save_with_camera(page, "pattern_fig", tmp_path)
    assert saved.name == "attention-explorer-pattern_fig.svg"
    svg = saved.read_text()
    assert svg.startswith("<svg") and 'width="1000"' in svg[:500] and 'height="700"' in svg[:500]

    # pasted markup: shown as the characters typed, in tick labels and hover; no element, no script
    submit_text(page, XSS)
    literal = wait_until(page, "s.ticks.some(t => t.includes('<'))")
    assert "".join(literal["ticks"]).replace("␣", " ") == XSS
    assert page.locator('img[src="x"]').count() == 0
    assert page.locator(".st-key-pattern_fig .js-plotly-plot img").count() == 0
    assert "query 0: <" in hover_text(page, "pattern_fig", 0.05, 0.05, UPDATE_MS)  # the first cell: "<" to "<"
    screenshot(page, "literal-html.png")
    # an image that fails to load fires its onerror handler: once a probe image made now has failed, one that the
    # markup would have created earlier had its chance to fire too
    assert page.evaluate("() => new Promise(done => { const probe = new Image(); probe.onerror = () => done(true);"
                         " probe.src = 'x'; })")
    assert page.dialogs == []
    log = app_server[1].read_text()
    assert "Traceback" not in log, log[-3000:]  # the server logged no exception


def test_the_all_heads_and_word_senses_tabs_draw_in_a_browser(app_server, tmp_path):
    """The All heads grid (one image of 270 thumbnails, a click target per head) and the Word senses tab on its
    "mole" preset draw in Chromium; the README's screenshots of both come from here."""
    url, log = app_server
    with chromium(tmp_path / "profile", viewport={"width": 1440, "height": 1500}) as page:
        dialogs = record_dialogs(page)
        page.goto(f"{url}/?tab=heads&text=" + SENTENCE.replace(" ", "+"))
        plot = "document.querySelector('.st-key-{key} .js-plotly-plot')"
        idle = "!document.querySelector('[data-testid=\"stStatusWidget\"]')"
        grid = plot.format(key="head_grid_fig")
        page.wait_for_function(f"() => {idle} && !!{grid} && !!{grid}._fullData", timeout=FIRST_LOAD_MS)
        targets = page.evaluate(f"() => {grid}._fullData.find(t => t.name === 'heads').x.length")
        assert targets == 30 * 9
        screenshot(page, "all-heads.png")
        page.get_by_role("tab", name="Word senses", exact=True).click()
        sim = plot.format(key="senses_sim")
        page.wait_for_function(f"() => {idle} && !!{sim} && !!{sim}._fullData", timeout=UPDATE_MS)
        labels = page.evaluate(f"() => Array.from({sim}._fullData[0].x)")
        assert len(labels) == 5 and labels[0].startswith("1: animal")
        screenshot(page, "word-senses.png")
    assert dialogs == []
    assert "Traceback" not in log.read_text()
