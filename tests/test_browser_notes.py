"""The "Follow the notes" view in a real browser: `streamlit run app.py` in headless Chromium. A visitor with
`<img src=x onerror=alert(1)>` in the sentence clicks "next" through all twelve steps: each step draws, the markup
shows as the characters typed (figure ticks), no element is created, no dialog opens; "explore" opens the matching
tab. ATTN_EXPLORER_SHOTS=docs/screenshots refreshes the README's two screenshots (dot products, Δe)."""

from __future__ import annotations

import re
import urllib.parse

import pytest

from tests.browser import chromium, record_dialogs
from tests.test_browser import FIRST_LOAD_MS, UPDATE_MS, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(900)]

XSS = "<img src=x onerror=alert(1)>"
SENTENCE = f"The cat {XSS} sat on the mat"
IDLE = "!document.querySelector('[data-testid=\"stStatusWidget\"]')"
FIG = "document.querySelector('.st-key-notes_fig .js-plotly-plot')"


def step_shown(page, step: int, timeout: int = UPDATE_MS) -> None:
    """Wait until the page shows `Step <step> of 12`, no run is going on, and the step's figure (if any) is drawn."""
    page.wait_for_function(
        f"() => {IDLE} && Array.from(document.querySelectorAll('h3'), h => h.textContent)"
        f".some(t => t.startsWith('Step {step} of 12'))", timeout=timeout, polling=250)


TICKS = "Array.from(p.querySelectorAll('.xtick text, .ytick text'), t => t.textContent)"  # what a visitor reads


def test_click_through_all_steps_with_markup_in_the_sentence(app_server, tmp_path):
    url, log = app_server
    with chromium(tmp_path / "profile", viewport={"width": 1440, "height": 1800}) as page:
        dialogs = record_dialogs(page)
        page.goto(f"{url}/?tab=notes&layer=1&head=3&text=" + urllib.parse.quote(SENTENCE))
        step_shown(page, 1, FIRST_LOAD_MS)
        for step in range(1, 13):
            if step > 1:
                page.locator(".st-key-notes_next button").click()
                step_shown(page, step)
                page.wait_for_url(re.compile(rf"notes\.step={step}(&|$)"))
            if step in (2, 4, 5, 6, 7, 8):  # figures with a token axis: the markup, piece by piece, literally
                page.wait_for_function(f"() => {{ const p = {FIG}; return !!p && !!p._fullData && {TICKS}.map("
                                       "t => t.replace(/^(k of |v of |q of )?\\d+: /, '')).join('')"
                                       f".replaceAll('␣', ' ').includes({XSS!r}); }}", timeout=UPDATE_MS)
            assert page.locator('img[src="x"]').count() == 0, step
            assert page.locator(".stMarkdown img").count() == 0, step

        # an image that fails to load fires its onerror handler: once a probe image made now has failed, one that the
        # markup would have created earlier had its chance to fire too
        assert page.evaluate("() => new Promise(done => { const probe = new Image(); probe.onerror = () => done(true);"
                             " probe.src = 'x'; })")
        page.locator(".st-key-notes_explore button").click()  # step 12 -> the Parameters tab, same state
        page.wait_for_function(f"() => {IDLE} && !!document.querySelector('.st-key-params_model')",
                               timeout=UPDATE_MS, polling=250)
        page.wait_for_url(re.compile(r"tab=params"))
        assert "head=3" in page.url and "layer=1" in page.url
    assert dialogs == []
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def test_screenshots_of_the_dot_product_and_delta_steps(app_server, tmp_path):
    """The README's pictures: step 5 (dot products) and step 9 (Δe), SmolLM2, layer 3, head 0."""
    url, log = app_server
    text = urllib.parse.quote("The capital of France is Paris, and the capital of Italy is")
    with chromium(tmp_path / "profile", viewport={"width": 1300, "height": 1250}) as page:
        for step, name in ((5, "notes-dot-products.png"), (9, "notes-delta.png")):
            page.goto(f"{url}/?tab=notes&layer=3&head=0&notes.step={step}&text={text}")
            step_shown(page, step, FIRST_LOAD_MS)
            page.wait_for_function(f"() => !!{FIG} && !!{FIG}._fullData", timeout=UPDATE_MS)
            screenshot(page, name)
    assert "Traceback" not in log.read_text()
