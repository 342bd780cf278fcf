"""The web UI in a real browser: Debian's chromium driven by Playwright (no browser download needed).

Opens the page on the fixture network and the tiny random CLIP, types a prompt, presses Generate, sees the
progress bar move and the image appear; then presses Stop on a long run and gets the best so far. Saves
screenshots as test artifacts (``$CLIPSTYLE_ARTIFACTS``, default the test's tmp folder); with
``CLIPSTYLE_UI_SCREENSHOT=docs/ui.png`` it also writes the README's screenshot.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from ._ui import served_ui

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.slow


def progress(page) -> tuple[int, int]:
    bar = page.locator("#text-progress")
    return int(bar.get_attribute("value")), int(bar.get_attribute("max"))


def test_generate_then_stop_in_chromium(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no system browser at {CHROMIUM} (apt-get install chromium)")
    artifacts = Path(os.environ.get("CLIPSTYLE_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    with served_ui(tmp_path / "out", preview_every=1) as (url, _demo), sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url, timeout=60_000)
            prompt = page.locator("#text-prompt textarea")
            prompt.wait_for(timeout=60_000)
            assert progress(page) == (0, 1)

            # a short run: the bar moves to 25/25 and the result image appears
            prompt.fill("a smiling face with red hair")
            page.locator("#text-steps input[type=number]").fill("25")
            page.locator("#text-steps input[type=number]").press("Enter")
            page.locator("#text-generate").click()
            page.wait_for_function("() => { const b = document.querySelector('#text-progress');"
                                   " return b && +b.value >= 1 && +b.max === 25; }", timeout=60_000)
            page.wait_for_function("() => +document.querySelector('#text-progress').value === 25", timeout=60_000)
            page.locator("#text-result img").wait_for(timeout=30_000)
            assert "done: 25 steps" in page.locator("#text-status-text").inner_text()
            page.wait_for_function("() => document.querySelectorAll('#text-files a').length >= 3", timeout=30_000)
            page.screenshot(path=str(artifacts / "ui-text.png"), full_page=True)

            # a long run, stopped: the best result so far comes back
            page.locator("#text-steps input[type=number]").fill("1000")
            page.locator("#text-steps input[type=number]").press("Enter")
            page.locator("#text-generate").click()
            page.wait_for_function("() => { const b = document.querySelector('#text-progress');"
                                   " return +b.max === 1000 && +b.value >= 5; }", timeout=60_000)
            page.locator("#text-stop").click()
            page.wait_for_function("() => (document.querySelector('#text-status-text') || {}).textContent"
                                   "?.includes('stopped after')", timeout=60_000)
            text = page.locator("#text-status-text").inner_text()
            done = int(re.search(r"stopped after (\d+) steps", text).group(1))
            assert 5 <= done < 1000 and "kept the best" in text
            assert progress(page) == (done, 1000)
            page.locator("#text-result img").wait_for(timeout=30_000)
            page.screenshot(path=str(artifacts / "ui-stopped.png"), full_page=True)
            target = os.environ.get("CLIPSTYLE_UI_SCREENSHOT")
            if target:
                shutil.copyfile(artifacts / "ui-text.png", target)
        finally:
            browser.close()


def test_clipstyle_ui_starts_with_one_command(tmp_path):
    """``clipstyle ui`` on the fixture network serves the page (a real process, stopped afterwards)."""
    pytest.importorskip("gradio")
    import subprocess
    import sys
    import time
    import urllib.request

    from ._cli import TINY_CLIP
    from . import _tiny
    from ._ui import free_port

    port = free_port()
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "clipstyle", "ui", "--port", str(port), "--network",
                             str(_tiny.network_file("sg2")), "--clip-model", TINY_CLIP, "--clip-pretrained",
                             "none", "--device", "cpu", "--outdir", str(tmp_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, page = time.monotonic() + 90, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    page = r.read().decode("utf-8", "replace")
                    break
            except OSError:
                time.sleep(0.5)
        assert page is not None, proc.stdout.read() if proc.poll() is not None else "no answer in 90 s"
        assert "tiny_sg2" in page and "text_to_image" in page  # the app's config: its network, its endpoints
    finally:
        proc.terminate()
        proc.wait(timeout=30)
