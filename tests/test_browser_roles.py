"""The Head roles tab in a real browser: `streamlit run app.py` in headless Chromium. A visitor opens the tab,
switches the top induction heads off with one click, sees the in-context learning check change, and finds the
heads switched off in the other tabs. ATTN_EXPLORER_SHOTS=docs/screenshots refreshes the README's screenshot."""

from __future__ import annotations

import re

import pytest

from tests.browser import chromium
from tests.test_browser import FIRST_LOAD_MS, UPDATE_MS, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

IDLE = "!document.querySelector('[data-testid=\"stStatusWidget\"]')"  # no run in progress
PLOT = "document.querySelector('.st-key-{key} .js-plotly-plot')"


def wait_for(page, condition: str, timeout: int = UPDATE_MS) -> None:
    """Wait until no run is in progress and the JavaScript expression `condition` holds."""
    page.wait_for_function(f"() => {IDLE} && ({condition})", timeout=timeout, polling=250)


def plot_has(key: str, body: str) -> str:
    """A condition on the drawn figure under `key`: `body` over `p`, its Plotly element (with _fullData)."""
    return f"(() => {{ const p = {PLOT.format(key=key)}; return !!p && !!p._fullData && ({body}); }})()"


def open_tab(page, label: str) -> None:
    page.get_by_role("tab", name=label, exact=True).click()


def test_switch_the_top_induction_heads_off_with_one_click(app_server, tmp_path):
    url, log = app_server
    with chromium(tmp_path / "profile", viewport={"width": 1440, "height": 2200}) as page:
        page.goto(url)
        wait_for(page, plot_has("pattern_fig", "true"), timeout=FIRST_LOAD_MS)
        open_tab(page, "Head roles")
        wait_for(page, plot_has("roles_maps", "true") + " && " + plot_has("roles_icl_fig", "true"))
        button = page.locator(".st-key-roles_switch_off button")
        label = button.text_content()
        heads = sorted(re.findall(r"(\d+)\.(\d+)", label))
        assert label.startswith("Switch these 3 heads off") and len(heads) == 3
        assert page.evaluate(f"() => {plot_has('roles_icl_fig', 'p._fullData.length')}") == 3  # a line, 2 means

        button.click()  # one click: the heads go off in the state every tab reads
        wait_for(page, plot_has("roles_icl_fig", "p._fullData.some(t => t.name === 'with your switches')"))
        off = sorted((int(layer), int(head)) for layer, head in heads)
        page.wait_for_url(re.compile("off=" + "(,|%2C)".join(f"{layer}.{head}" for layer, head in off)))
        rise = page.locator('[data-testid="stMetricDelta"]').first.text_content()
        assert float(rise.split()[0].replace("+", "").replace("−", "-")) > 1  # the second copy's loss rose
        screenshot(page, "head-roles.png")

        open_tab(page, "All heads")  # crossed out in the grid
        crossed = "p._fullData.find(t => t.name === 'switched off')"
        wait_for(page, plot_has("head_grid_fig", f"{crossed} && {crossed}.x.length === 3"))
        grid = page.evaluate(f"() => {{ const p = {PLOT.format(key='head_grid_fig')}; const t = {crossed};"
                             " return Array.from(t.y, (y, i) => [y, t.x[i]]); }")
        assert sorted((int(la), int(h)) for la, h in grid) == off

        open_tab(page, "Attention pattern")  # the prediction compares with the unmodified run
        wait_for(page, plot_has("pred_fig_pattern_tab", "p._fullData.length === 2"))
        assert page.get_by_text("An intervention is active").is_visible()
        assert page.get_by_text("3 head(s) switched off").first.is_visible()
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
