"""Helpers for the browser test: a real `streamlit run app.py` on a free localhost port, and Debian's Chromium
driven by Playwright (no browser download: `executable_path` points at /usr/bin/chromium)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path(os.environ.get("ATTN_EXPLORER_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str, timeout: float = 2) -> bool:
    """Does the server at url answer its health check?"""
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


@contextmanager
def streamlit_server(log_path: Path, env: dict[str, str] | None = None, timeout: float = 120, script: str = "app.py"):
    """Start `streamlit run app.py` (or `script`) on a free port; yield its URL; always stop it (and its children)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    command = [sys.executable, "-m", "streamlit", "run", str(ROOT / script), "--server.headless", "true",
               "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none"]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=server_env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while not healthy(url):
                if process.poll() is not None:
                    raise RuntimeError(f"streamlit exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"streamlit did not answer on {url} in {timeout} s:\n"
                                       f"{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)


@contextmanager
def chromium(profile: Path, viewport: dict[str, int] | None = None):
    """A headless Chromium page with a fresh profile folder."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport=viewport or {"width": 1440, "height": 1400}, device_scale_factor=1)
        try:
            page = context.pages[0] if context.pages else context.new_page()
            yield page
        finally:
            context.close()


@contextmanager
def chromium_browser():
    """One headless Chromium; `browser.new_context()` gives each visitor its own cookies (sticky sessions)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def free_ports(count: int) -> int:
    """The first of `count` consecutive free localhost ports (scripts/serve.sh numbers replicas from a base)."""
    for _ in range(50):
        base = free_port()
        if base + count > 65535:
            continue
        try:
            sockets = []
            for port in range(base, base + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError(f"no {count} consecutive free ports")


def wait_for_state(page, js_state: str, predicate_js: str, timeout: int, idle: bool = True,
                   polling: int = 250) -> dict:
    """Wait until `js_state` (a JavaScript function returning an object, or null before the page is drawn)
    satisfies `predicate_js`, a body over `s`, and, with idle, no run is going on (`s.running` false).
    Returns the state that satisfied it (read in the same moment: the page may change right after)."""
    rest = "!s.running && " if idle else ""
    handle = page.wait_for_function(
        f"() => {{ const s = ({js_state})(); return !!s && {rest}({predicate_js}) ? s : null; }}",
        timeout=timeout, polling=polling)
    return handle.json_value()


def hover_text(page, key: str, fx: float, fy: float, timeout: int, px: float = 0) -> str:
    """Hover the point at fractions (fx, fy) of the drag area of the chart in `.st-key-{key}` (plus `px` pixels
    right) and return the hover label's text, read in one moment. A chart that redraws (the page settles, a scroll
    bar comes) removes its hover label: the point is found again and hovered again until a label is read."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    deadline = time.monotonic() + timeout / 1000
    area = page.locator(f".st-key-{key} .nsewdrag").first
    while True:
        box = area.bounding_box()
        if box:
            page.mouse.move(box["x"] + box["width"] * fx + px + 1, box["y"] + box["height"] * fy + 1)
            page.mouse.move(box["x"] + box["width"] * fx + px, box["y"] + box["height"] * fy)
            try:
                return page.wait_for_function(
                    f"() => document.querySelector('.st-key-{key} .hovertext')?.textContent || null",
                    timeout=2_000, polling=100).json_value()
            except PlaywrightTimeoutError:
                pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no hover label on {key} within {timeout} ms")
        time.sleep(0.25)


def record_dialogs(page) -> list[str]:
    """Record and dismiss every alert(), confirm() or prompt() the page opens: none may fire."""
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    return dialogs
