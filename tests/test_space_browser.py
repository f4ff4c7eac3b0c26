"""The Space in a real headless browser: Debian's chromium driven by Playwright, the app on loopback.

The README's test command installs chromium (apt) where it can. Without it the test is skipped on
a developer's machine and fails in CI (``CI`` set), so a green CI always means the browser ran.
The screenshot lands in ``test-artifacts/`` for a person to look at.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.subprocess]
REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
TABS = ("Recommend", "Hub statistics", "Quick trial", "Convert to LoRA")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is not installed; the README test command installs it with apt-get")
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def space_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The app's TMPDIR: every request's folder must be gone from it once the response is sent."""
    return tmp_path_factory.mktemp("space-tmp")


def _request_folders_left(space_tmp: Path) -> list[str]:
    """The app's peft-advisor-* folders, after giving the page's clean-up event a moment to run."""
    deadline = time.monotonic() + 15
    while True:
        left = sorted(p.name for p in space_tmp.glob("peft-advisor-*"))
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.25)


@pytest.fixture(scope="module")
def space_url(tmp_path_factory: pytest.TempPathFactory, space_tmp: Path) -> Iterator[str]:
    port = _free_port()
    home = tmp_path_factory.mktemp("space-home")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "PEFT_ADVISOR_HOME": str(home),
        "TMPDIR": str(space_tmp),
    }
    log = open(home / "space.log", "w")  # noqa: SIM115 - closed in the teardown below
    proc = subprocess.Popen(
        [sys.executable, "-m", "advisor.cli", "space", "--port", str(port)], stdout=log, stderr=log, env=env
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            pytest.fail(f"the app did not start: {(home / 'space.log').read_text()[-2000:]}")
        time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def test_recommend_tab_in_a_browser_matches_the_cli(space_url: str) -> None:
    from playwright.sync_api import sync_playwright

    cli = subprocess.run(
        [sys.executable, "-m", "advisor.cli", "--vram", "24", "--task", "math", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    expected = json.loads(cli.stdout)["rows"][0]
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(space_url, wait_until="load")  # not networkidle: the page keeps a heartbeat open
            page.locator("#vram input").fill("24")
            page.locator("#rank").click()
            page.wait_for_function(
                "() => (document.querySelector('#notes')?.innerText || '').includes('Task: math')", timeout=60_000
            )
            tabs = [page.get_by_role("tab", name=name).count() for name in TABS]  # the page has rendered
            # Gradio's dataframe draws its rows as a virtual grid; its own test ids name each cell.
            cells = [page.locator(f'#ranking [data-testid="cell-0-{col}"]').inner_text() for col in range(3)]
            page.screenshot(path=str(ARTIFACTS / "space-recommend.png"))
        finally:
            browser.close()
    assert tabs == [1] * len(TABS)  # all four tabs are served
    cells = [cell.strip() for cell in cells]
    assert cells[:3] == ["1", expected["method_display"], expected["variant"]], cells
    assert (ARTIFACTS / "space-recommend.png").stat().st_size > 10_000


def test_a_malicious_upload_is_refused_in_the_page(space_url: str, space_tmp: Path, tmp_path: Path) -> None:
    """A zip that writes outside its folder: the page says why, no stack trace, nothing converted."""
    import zipfile

    from playwright.sync_api import sync_playwright

    evil = tmp_path / "adapter.zip"
    with zipfile.ZipFile(evil, "w") as bundle:
        bundle.writestr("adapter_config.json", '{"peft_type": "OFT"}')
        bundle.writestr("../../../tmp/escaped.json", "{}")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.goto(space_url, wait_until="load")  # not networkidle: the page keeps a heartbeat open
            page.get_by_role("tab", name="Convert to LoRA").click()
            page.locator("#adapter-upload input[type=file]").set_input_files(str(evil))
            page.locator("#adapter-upload").get_by_text("adapter.zip").wait_for(timeout=90_000)  # uploaded
            page.locator("#convert").click()
            page.wait_for_function(
                "() => (document.querySelector('#convert-message')?.innerText || '').includes('Error')",
                timeout=60_000,
            )
            message = page.locator("#convert-message").inner_text()
            page.screenshot(path=str(ARTIFACTS / "space-malicious-upload.png"))
        finally:
            browser.close()
    assert "refused" in message and "outside the archive" in message
    assert "Traceback" not in message
    assert _request_folders_left(space_tmp) == []


def test_quick_trial_tab_runs_a_trial_in_the_page(space_url: str, space_tmp: Path) -> None:
    """One candidate, two steps on the shipped sample and MiniLM: progress, then the leaderboard and the winner."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(space_url, wait_until="load")  # not networkidle: the page keeps a heartbeat open
            page.get_by_role("tab", name="Quick trial").click()
            for name in ("oft", "ia3"):  # leave LoRA alone: the quickest trial that still ranks
                page.locator("#candidates").get_by_label(name, exact=True).uncheck()
            page.locator("#trial-steps input[type=number]").fill("2")
            page.locator("#trial-steps input[type=number]").press("Enter")
            page.locator("#trial").click()
            page.wait_for_function(
                "() => /Winner:|Error/.test(document.querySelector('#trial-message')?.innerText || '')",
                timeout=240_000,
            )
            message = page.locator("#trial-message").inner_text()
            first = page.locator('#leaderboard [data-testid="cell-0-1"]').inner_text()
            page.screenshot(path=str(ARTIFACTS / "space-trial.png"))
        finally:
            browser.close()
    assert "Winner: lora" in message and "2 steps" in message, message[:500]
    assert first.startswith("lora")
    assert _request_folders_left(space_tmp) == []  # removed once the leaderboard and the zip were sent
