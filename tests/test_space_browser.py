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
TABS = ("From budget to served adapter", "Recommend", "Hub statistics", "Quick trial", "Convert to LoRA")
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
            page.get_by_role("tab", name="Recommend").click()
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
    assert tabs == [1] * len(TABS)  # every tab is served
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
            _wait_until_uploaded(page, "#adapter-upload", "adapter.zip")
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


def _wait_until_uploaded(page, selector: str, name: str) -> None:
    """Wait until the File component lists the uploaded file, however this Gradio release draws its name.

    Gradio 6.3x splits the name into stem and extension spans (``sums`` ``.jsonl``), so a plain text
    match misses it; the name cell's aria-label and the download link's ``download`` attribute do not.
    """
    page.wait_for_function(
        """([selector, name]) => {
            const box = document.querySelector(selector);
            if (!box) return false;
            const shown = (box.innerText || '').replace(/\\s+/g, '');
            return shown.includes(name) || [...box.querySelectorAll('[aria-label], a[download]')].some(
                (el) => el.getAttribute('aria-label') === name || el.getAttribute('download') === name);
        }""",
        arg=[selector, name],
        timeout=90_000,
    )


def _page_text_has_no_server_path(page, *roots: Path) -> str:
    text = page.inner_text("body")
    for root in roots:
        assert str(root) not in text, f"server path {root} on the page"
    assert "/tmp/" not in text and "gradio/" not in text, "a server temp path on the page"
    return text


def _run_auto_tab(page, timeout_ms: int = 400_000) -> tuple[str, str, str]:
    page.locator("#auto-run").click()
    page.wait_for_function(
        "() => /Ready|Warning|Error/.test(document.querySelector('#auto-message')?.innerText || '')",
        timeout=timeout_ms,
    )
    message = page.locator("#auto-message").inner_text()
    summary = page.locator("#auto-summary").inner_text()
    command = page.locator("#auto-command").inner_text()
    return message, summary, command


def test_budget_to_served_adapter_on_minilm(space_url: str, space_tmp: Path) -> None:
    """The first tab end to end on the bundled sample and MiniLM: served for PEFT, one zip, no server path."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(space_url, wait_until="load")
            for name in ("oft", "ia3"):
                page.locator("#auto-candidates").get_by_label(name, exact=True).uncheck()
            message, summary, command = _run_auto_tab(page)
            download = page.locator("#auto-download").get_by_text(".zip").count()
            text = _page_text_has_no_server_path(page, space_tmp)
            page.screenshot(path=str(ARTIFACTS / "space-auto-minilm.png"), full_page=True)
        finally:
            browser.close()
    assert "Ready. Download the zip below." in message, message
    assert "Served: LoRA for peft" in summary and "served/lora" in summary
    assert "sentence-transformers/all-MiniLM-L6-v2" in command and "served/lora" in command
    assert download >= 1 and "Traceback" not in text
    assert _request_folders_left(space_tmp) == []


def test_budget_to_served_adapter_on_a_small_llama_for_vllm(
    space_url: str, space_tmp: Path, tmp_path: Path, talking_llama: Path
) -> None:
    """A small Llama and an uploaded prompt/response set, served by vLLM: OFT is converted and checked."""
    from playwright.sync_api import sync_playwright

    rows = [{"prompt": f"What is {i} plus {i}?", "response": f"It is {2 * i}."} for i in range(40)]
    upload = tmp_path / "sums.jsonl"
    upload.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(space_url, wait_until="load")
            page.locator("#auto-data input[type=file]").set_input_files(str(upload))
            _wait_until_uploaded(page, "#auto-data", "sums.jsonl")
            page.locator("#auto-model textarea, #auto-model input").first.fill(str(talking_llama))
            for name in ("lora", "ia3"):
                page.locator("#auto-candidates").get_by_label(name, exact=True).uncheck()
            page.locator("#auto-serve").get_by_label("vllm", exact=True).check()
            message, summary, command = _run_auto_tab(page)
            text = _page_text_has_no_server_path(page, space_tmp, tmp_path)
            page.screenshot(path=str(ARTIFACTS / "space-auto-llama.png"), full_page=True)
        finally:
            browser.close()
    assert "Ready. Download the zip below." in message, message + summary
    assert "OFT for vllm, converted to LoRA rank" in summary and "passes the vllm checks" in summary
    assert "vllm serve talking-llama" in command and "--lora-modules oft=served/oft" in command
    assert "Traceback" not in text
    assert _request_folders_left(space_tmp) == []


def test_a_400px_screen_shows_the_whole_ranking_row(space_url: str) -> None:
    """On a phone-sized screen the ranking scrolls sideways inside its box; no column is cut away."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 400, "height": 900})
            page.goto(space_url, wait_until="load")
            page.get_by_label("More tabs").click()  # a narrow screen folds the other tabs into a menu
            page.get_by_role("button", name="Recommend", exact=True).click()
            page.locator("#vram input").fill("24")
            page.locator("#rank").click()
            page.locator('#ranking [data-testid="cell-0-1"]').wait_for(timeout=60_000)
            headers = page.locator("#ranking thead th").all_inner_texts()
            last = page.locator("#ranking thead th").last
            last.scroll_into_view_if_needed()
            last_visible = last.is_visible()
            page_width = page.evaluate("() => document.documentElement.scrollWidth")
            page.screenshot(path=str(ARTIFACTS / "space-400px.png"), full_page=True)
        finally:
            browser.close()
    assert len([h for h in headers if h.strip()]) >= 10, headers  # every column is there
    assert last_visible  # reachable by scrolling the table, not cut off
    assert page_width <= 420  # the page itself does not overflow the screen
