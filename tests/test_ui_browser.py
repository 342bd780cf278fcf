"""The web UI in a real browser: Debian's chromium driven by Playwright (no browser download needed).

On the tiny models built in code: types a prompt, presses Generate, sees the progress bar move and the image
appear, stops a long run and gets the best so far; then clicks through every other tab — Photo (upload, Encode,
Project, Edit on the real pipelines), Styleblocks, Mix, Blend, Interpolate — and sees each one's result.
Screenshots go to ``$CLIPSTYLE_ARTIFACTS`` (default the test's tmp folder); with
``CLIPSTYLE_UI_SCREENSHOT=docs/ui.png`` the Text tab's screenshot becomes the README's.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ._ui import served_ui, tiny_models

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.slow


def progress(page, key: str = "text") -> tuple[int, int]:
    bar = page.locator(f"#{key}-progress")
    return int(bar.get_attribute("value")), int(bar.get_attribute("max"))


def status_has(page, key: str, text: str, timeout: int = 90_000) -> None:
    page.wait_for_function(f"() => (document.querySelector('#{key}-status-text') || {{}}).textContent"
                           f"?.includes({text!r})", timeout=timeout)


def set_number(page, elem_id: str, value: int) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def test_every_tab_in_chromium(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no system browser at {CHROMIUM} (apt-get install chromium)")
    artifacts = Path(os.environ.get("CLIPSTYLE_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    photo = tmp_path / "me.png"
    Image.fromarray((np.random.default_rng(0).random((48, 40, 3)) * 255).astype(np.uint8)).save(photo)
    with tiny_models(tmp_path / "models") as models, \
            served_ui(tmp_path / "out", preview_every=1, models=models) as (url, _demo), \
            sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url, timeout=60_000)
            prompt = page.locator("#text-prompt textarea")
            prompt.wait_for(timeout=60_000)
            assert progress(page) == (0, 1)

            # Text: a short run; the bar moves to 25/25, the result and its three files appear
            prompt.fill("a smiling face with red hair")
            set_number(page, "text-steps", 25)
            page.locator("#text-generate").click()
            page.wait_for_function("() => { const b = document.querySelector('#text-progress');"
                                   " return b && +b.value >= 1 && +b.max === 25; }", timeout=90_000)
            page.wait_for_function("() => +document.querySelector('#text-progress').value === 25", timeout=90_000)
            page.locator("#text-result img").wait_for(timeout=30_000)
            assert "done: 25 steps" in page.locator("#text-status-text").inner_text()
            page.wait_for_function("() => document.querySelectorAll('#text-files a').length >= 3", timeout=30_000)
            page.screenshot(path=str(artifacts / "ui-text.png"), full_page=True)

            # Text: a long run, stopped; the best so far comes back
            set_number(page, "text-steps", 500)
            page.locator("#text-generate").click()
            page.wait_for_function("() => { const b = document.querySelector('#text-progress');"
                                   " return +b.max === 500 && +b.value >= 5; }", timeout=90_000)
            page.locator("#text-stop").click()
            status_has(page, "text", "stopped after")
            text = page.locator("#text-status-text").inner_text()
            done = int(re.search(r"stopped after (\d+) steps", text).group(1))
            assert 5 <= done < 500 and "kept the best" in text and progress(page) == (done, 500)

            # Photo: upload, Encode (the operator's e4e), Project and Edit, each on the real pipelines
            page.get_by_role("tab", name="Photo").click()
            page.locator("#photo-upload input[type=file]").set_input_files(str(photo))
            page.locator("#photo-perceptual").get_by_label("none").check()
            set_number(page, "photo-project-steps", 6)
            set_number(page, "photo-steps", 4)
            page.locator("#photo-encode").click()
            status_has(page, "photo", "encode: done")
            page.locator("#photo-project").click()
            status_has(page, "photo", "project: done")
            page.locator("#photo-after img").wait_for(timeout=30_000)
            page.locator("#photo-prompt textarea").fill("a smiling face")
            page.locator("#photo-edit").click()
            status_has(page, "photo", "edit: done")
            page.wait_for_function("() => document.querySelectorAll('#photo-files a').length >= 3", timeout=30_000)
            page.screenshot(path=str(artifacts / "ui-photo.png"), full_page=True)

            # Styleblocks (rendered when the page opened), Mix, Blend, Interpolate
            page.get_by_role("tab", name="Styleblocks").click()
            page.locator("#sb-image img").wait_for(timeout=30_000)
            page.get_by_role("tab", name="Mix").click()
            set_number(page, "mix-b", 5)
            page.locator("#mix-image img").wait_for(timeout=30_000)
            page.get_by_role("tab", name="Blend").click()
            page.locator("#blend-go").click()
            page.locator("#blend-image img").wait_for(timeout=30_000)
            page.get_by_role("tab", name="Interpolate").click()
            page.locator("#ip-go").click()
            status_has(page, "interpolate", "frames →")
            page.locator("#ip-gif img").wait_for(timeout=30_000)
            page.screenshot(path=str(artifacts / "ui-interpolate.png"), full_page=True)
            target = os.environ.get("CLIPSTYLE_UI_SCREENSHOT")
            if target:
                shutil.copyfile(artifacts / "ui-text.png", target)
        finally:
            browser.close()


def test_clipstyle_ui_starts_with_one_command(tmp_path):
    """``clipstyle ui`` on a tiny network serves the page (a real process, stopped afterwards)."""
    pytest.importorskip("gradio")
    import subprocess
    import sys
    import time
    import urllib.request

    from ._cli import TINY_CLIP
    from ._ui import free_port

    port = free_port()
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    with tiny_models(tmp_path / "models") as models:
        proc = subprocess.Popen([sys.executable, "-m", "clipstyle", "ui", "--port", str(port), "--network",
                                 models["network"], "--network", models["network_b"], "--encoder", models["encoder"],
                                 "--clip-model", TINY_CLIP, "--clip-pretrained", "none", "--device", "cpu",
                                 "--outdir", str(tmp_path / "out")], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline, page = time.monotonic() + 120, None
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=2) as r:
                        page = r.read().decode("utf-8", "replace")
                        break
                except OSError:
                    time.sleep(0.5)
            assert page is not None, proc.stdout.read() if proc.poll() is not None else "no answer in 120 s"
            assert "tiny_a" in page and "text_to_image" in page and "encode" in page  # its network, endpoints
        finally:
            proc.terminate()
            proc.wait(timeout=30)
