"""The Why tab in a real browser: `streamlit run app.py` in headless Chromium. A visitor opens the tab from a link,
sees the head attributions, the score's decomposition and the route, checks the route against the model, and opens
a head's pattern with one click. ATTN_EXPLORER_SHOTS=docs/screenshots refreshes the README's screenshots."""

from __future__ import annotations

import re
import urllib.parse

import pytest
from playwright.sync_api import expect

from tests.browser import chromium
from tests.test_browser import FIRST_LOAD_MS, screenshot
from tests.test_browser_roles import plot_has, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

TEXT = "The capital of France is Paris, and the capital of Germany is"


def test_why_prediction_score_and_route(app_server, tmp_path):
    url, log = app_server
    link = url + "?" + urllib.parse.urlencode({"tab": "why", "text": TEXT, "layer": 18, "head": 6})  # induction
    with chromium(tmp_path / "profile", viewport={"width": 1440, "height": 1800}) as page:
        page.goto(link)
        wait_for(page, plot_has("why_heads_map", "p._fullData[0].z.length === 30") + " && "
                 + plot_has("why_by_source", "true"), timeout=FIRST_LOAD_MS)
        expect(page.get_by_text("sum of all parts")).to_be_visible()
        screenshot(page, "why.png")

        page.get_by_text("Why this score", exact=True).click()
        wait_for(page, plot_has("why_terms", "true"))
        page.wait_for_url(re.compile(r"why\.section=score"))
        expect(page.get_by_text("side of this score comes mostly from").first).to_be_visible()
        screenshot(page, "why-score.png")

        page.get_by_text("Which route", exact=True).click()
        wait_for(page, plot_has("why_flow", "p._fullData.some(t => t.mode === 'markers')"))
        page.locator(".st-key-why_check label").click()  # the ablation check: one run per head
        wait_for(page, "!!document.querySelector('.st-key-why_check_table')")
        page.wait_for_url(re.compile(r"why\.check=1"))
        screenshot(page, "why-route.png")

        page.get_by_text("Why this prediction", exact=True).click()
        wait_for(page, plot_has("why_by_source", "true"))
        button = page.locator(".st-key-why_open_head button")
        layer, head = re.search(r"head (\d+)\.(\d+)", button.text_content()).groups()
        button.click()  # opens the pattern view on that head
        page.wait_for_url(re.compile(f"layer={layer}&head={head}.*tab=pattern"))
        wait_for(page, plot_has("pattern_fig", "true"))
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
