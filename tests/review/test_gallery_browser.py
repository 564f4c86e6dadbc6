"""The review gallery in a real headless Chromium, driven over W3C WebDriver (chromedriver).

Skips when Chromium or chromedriver is missing, unless ``CI`` is set (then it fails).
Set ``GALLERY_SCREENSHOT=docs/gallery.png`` to refresh the README screenshot.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from test_gallery import RUN, make_run

from fashn_prefect.emulator import EmulatorServer
from fashn_prefect.review.gallery import write_gallery

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
CHROME_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
]


def _tools() -> tuple[str, str]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    reason = "chromium and chromedriver are needed (apt-get install chromium chromium-driver)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI is set, so this must not be skipped")
    pytest.skip(reason)


class Browser:
    """A WebDriver session: just the calls these tests need."""

    def __init__(self, http: httpx.Client, session: str) -> None:
        self.http, self.session = http, session

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.http.request(method, f"/session/{self.session}{path}", json=body)
        assert response.status_code == 200, response.text
        return response.json()["value"]

    def script(self, source: str, *args: Any) -> Any:
        return self.call("POST", "/execute/sync", {"script": source, "args": list(args)})

    def click(self, css: str) -> None:
        found = self.call("POST", "/element", {"using": "css selector", "value": css})
        self.call("POST", f"/element/{found[ELEMENT]}/click", {})

    def visible_cards(self) -> list[dict[str, str]]:
        return self.script(
            "return Array.from(document.querySelectorAll('.card'))"
            ".filter(c => c.offsetParent !== null)"
            ".map(c => ({status: c.dataset.status, model: c.dataset.model}));"
        )


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    chromium, driver = _tools()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [driver, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60, trust_env=False)
    try:
        deadline = time.monotonic() + 30
        while True:  # wait until chromedriver answers
            try:
                if http.get("/status").json()["value"]["ready"]:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "chromedriver died"
            time.sleep(0.05)
        options = {"binary": chromium, "args": [*CHROME_ARGS, f"--user-data-dir={tmp_path}/chrome"]}
        caps = {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}
        created = http.post("/session", json={"capabilities": caps})
        assert created.status_code == 200, created.text
        session = created.json()["value"]["sessionId"]
        try:
            yield Browser(http, session)
        finally:
            http.delete(f"/session/{session}")
    finally:
        http.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_gallery_renders_and_filters_offline(
    browser: Browser, tmp_path: Path, fashn_emulator: EmulatorServer
) -> None:
    run = make_run(tmp_path, fashn_emulator)
    uri = write_gallery(run.table, str(run.root), RUN)
    browser.call("POST", "/window/rect", {"width": 1440, "height": 1100})
    browser.call("POST", "/url", {"url": uri})

    # every image loads (lazy ones made eager), from the thumbnails folder on disk
    images = browser.call(
        "POST",
        "/execute/async",
        {
            "script": """
            const done = arguments[arguments.length - 1];
            const imgs = Array.from(document.images);
            imgs.forEach(i => { i.loading = 'eager'; });
            Promise.all(imgs.map(i => i.complete ? null : new Promise(r => {
              i.addEventListener('load', r); i.addEventListener('error', r);
            }))).then(() => done(imgs.map(i => [i.getAttribute('src'), i.naturalWidth])));
            """,
            "args": [],
        },
    )
    assert len(images) == 12
    assert all(width > 0 for _, width in images), images
    loaded = browser.script("return Array.from(document.images).map(i => i.currentSrc);")
    root = run.root.resolve().as_uri() + "/thumbnails/"
    assert all(src.startswith(root) for src in loaded), loaded
    assert browser.script("return window.__pwned === undefined;") is True

    assert len(browser.visible_cards()) == 6
    assert browser.script("return document.getElementById('shown').textContent;") == "6"
    shot = base64.b64decode(browser.call("GET", "/screenshot"))
    with Image.open(io.BytesIO(shot)) as image:
        assert image.format == "PNG" and image.width >= 1000
    if target := os.environ.get("GALLERY_SCREENSHOT"):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_bytes(shot)

    browser.click('#status-filter button[data-status="failed"]')
    assert browser.visible_cards() == [{"status": "failed", "model": "tryon-v1.6"}]
    assert browser.script("return document.getElementById('shown').textContent;") == "1"

    browser.click('#status-filter button[data-status=""]')
    browser.click("#model-filter")
    browser.click('#model-filter option[value="product-to-model"]')
    assert browser.visible_cards() == [{"status": "completed", "model": "product-to-model"}] * 2

    browser.click('#model-filter option[value=""]')
    assert len(browser.visible_cards()) == 6


def test_missing_browser_skips_locally_but_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium"):
        _tools()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        _tools()
