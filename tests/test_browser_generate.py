"""The Generate tab in a real browser: `streamlit run app.py` driven in headless Chromium. A link that names the
settings writes at once, with a progress bar and the text growing as the tokens come; the step slider moves the
step panel; switching the sidebar's head off writes the continuation again beside the unmodified one, and they part;
pasted markup in the prompt and the text written after it show as typed, create no element and run nothing.
ATTN_EXPLORER_SHOTS=docs/screenshots refreshes the README's screenshot (generate.png)."""

from __future__ import annotations

import urllib.parse

import pytest

from tests.browser import chromium, record_dialogs, wait_for_state
from tests.test_browser import FIRST_LOAD_MS, UPDATE_MS, XSS, screenshot, submit_text

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]
PROMPT = "a fluffy blue creature roamed the verdant forest"
NEW = 48
LAYER, HEAD = 18, 0  # switched off, SmolLM2 writes "soared above the treeline" instead of "soared above, its wings"

# What a visitor sees of the tab: the progress bar, the code blocks, the step summary, whether a run is going on.
JS_STATE = """() => {
  const text = sel => document.querySelector(sel)?.textContent ?? null;
  return {
    progress: text('[data-testid="stProgress"]'),
    codes: Array.from(document.querySelectorAll('[data-testid="stCode"] code'), c => c.textContent),
    prompt: text('.st-key-generate_prompt code'),
    written: text('.st-key-generate_text code'),
    base: text('.st-key-generate_base_text code'),
    summary: text('.st-key-generate_step_summary'),
    parting: !!document.querySelector('.st-key-generate_parting_fig .js-plotly-plot'),
    row: !!document.querySelector('.st-key-generate_row_fig .js-plotly-plot'),
    running: !!document.querySelector('[data-testid="stStatusWidget"]'),
  };
}"""


def wait_until(page, predicate_js: str, timeout: int = UPDATE_MS) -> dict:
    """Wait until JS_STATE satisfies `predicate_js` (a body over `s`), running or not; return it."""
    return wait_for_state(page, JS_STATE, predicate_js, timeout, idle=False, polling=100)


def done(predicate_js: str = "true") -> str:
    """The run is over and the step panel is drawn, and `predicate_js` holds."""
    return f"!s.running && s.summary !== null && s.row && ({predicate_js})"


def test_generate_step_switch_a_head_off_and_markup_stays_text(app_server, tmp_path):
    url, log = app_server
    with chromium(tmp_path / "profile") as page:
        dialogs = record_dialogs(page)
        query = urllib.parse.urlencode({"tab": "generate", "text": PROMPT, "generate.new": NEW, "layer": LAYER,
                                        "head": HEAD})
        page.goto(f"{url}/?{query}")

        # the link names the settings: it writes at once, the tokens appear as they come (the progress bar and the
        # growing text are two elements, drawn one after the other: wait for a moment that shows both)
        live = wait_until(page, f"/Writing: [1-9][0-9]* of {NEW} tokens/.test(s.progress ?? '')"
                          f" && s.codes.some(c => c.startsWith({PROMPT!r}))", timeout=FIRST_LOAD_MS)
        first = wait_until(page, done())
        whole = first["prompt"] + first["written"]
        assert first["prompt"] == PROMPT and len(first["written"]) > 10
        growing = [c for c in live["codes"] if c.startswith(PROMPT)]
        assert growing and whole.startswith(growing[0]) and len(growing[0]) < len(whole)  # part of the text, so far
        assert first["summary"].startswith("Step 1 of ")

        # the step slider moves the step panel
        page.locator('.st-key-generate_step input[type="range"]').press("ArrowRight")
        wait_until(page, done("s.summary.startsWith('Step 2 of ')"))

        # switch the sidebar's head off: the continuation is written again, beside the unmodified one, and they part
        toggle = page.locator(".st-key-generate_toggle_head")
        toggle.get_by_role("button", name=f"Switch head {LAYER}.{HEAD} off").click()
        off = wait_until(page, done("s.base !== null && s.parting"), timeout=3 * UPDATE_MS)  # writes twice
        assert off["base"] == whole and off["written"].startswith(PROMPT) and off["written"] != whole
        parting = page.get_by_text("They part at step")
        assert parting.is_visible()
        step = int(parting.text_content().split("step ")[1].split(":")[0])
        page.locator(".st-key-generate_go_parting button").click()
        wait_until(page, done(f"s.summary.startsWith('Step {step} of ')"))
        screenshot(page, "generate.png")

        # markup in the prompt: shown as typed in the text blocks, no element created, nothing run
        submit_text(page, f"{XSS} {PROMPT}")
        literal = wait_until(page, done(f"(s.written ?? '').startsWith({XSS!r})"), timeout=2 * UPDATE_MS)
        assert literal["base"].startswith(f"{XSS} {PROMPT}") and literal["written"].startswith(f"{XSS} {PROMPT}")
        assert page.locator('img[src="x"]').count() == 0
        assert page.evaluate("() => new Promise(done => { const probe = new Image(); probe.onerror = () => done(true);"
                             " probe.src = 'x'; })")
        assert dialogs == []
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
