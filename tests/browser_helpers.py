"""Debian's Chromium through Playwright, shared by the browser tests (imported by them;
not a pytest conftest). `playwright install` is never needed: we drive /usr/bin/chromium."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from conftest_web import require_real_part

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"  # screenshots: look at them when a test fails
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@contextmanager
def launched_chromium():
    require_real_part(CHROMIUM, "Chromium", module="playwright")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
