"""A real browser (Debian's Chromium through Playwright) against a real `sda serve`.

The journey a musician takes: open the link with the access token, create the
demo dataset, start a short training run, watch the chart and a preview
player appear, cancel, resume, and see the history continue. Then the same
with JavaScript switched off: plain forms, redirects and page refreshes.
Screenshots go to test-artifacts/ (look at them when a test fails).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from browser_helpers import ARTIFACTS, launched_chromium
from conftest_web import CspWatch, free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "browser-test-token-7f3a"
EPOCHS = "20"  # long enough to cancel mid-run; ~1 s an epoch on the demo sounds

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("browser") / "data"
    port = free_port()
    env = {**os.environ, "SDA_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "sda_web.web.serve", "--port", str(port), "--data-dir", str(data),
                             "--token", TOKEN], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(base + "/", timeout=1)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "sda serve did not start"
            time.sleep(0.05)
    yield base
    proc.terminate()
    out, _ = proc.communicate(timeout=20)
    assert "Traceback" not in out, out


@pytest.fixture(scope="module")
def browser():
    with launched_chromium() as chromium:
        yield chromium


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"browser-{name}.png"), full_page=True)


def epoch_shown(page) -> int:
    match = re.search(r"Epoch (\d+)/", page.inner_text("#train-stats"))
    return int(match.group(1)) if match else 0


def chart_points(page) -> int:
    points = page.get_attribute("#loss-chart polyline.train", "points") or ""
    return len(points.split())


def wait_until(page, predicate, timeout_s: float, what: str, reload_every: float | None = None) -> None:
    """Poll `predicate()`; without JavaScript, reload the page (the no-JS fallback) between polls."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            shot(page, "timeout")
            raise AssertionError(f"timed out waiting for {what}")
        if reload_every:
            time.sleep(reload_every)
            page.reload()
        else:
            page.wait_for_timeout(100)


def test_the_journey_with_javascript(server, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    watch = CspWatch(context, page)  # the live fragments (chart, stats, previews) obey the CSP too

    # the printed link: the token becomes a cookie and leaves the address bar
    page.goto(f"{server}/?token={TOKEN}")
    assert page.url == f"{server}/data"
    cookie = next(c for c in context.cookies() if c["name"].startswith("sda_token_"))
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    page.get_by_role("button", name="Use demo sounds").click()
    page.get_by_text("“demo” now has 24 files").wait_for(timeout=60_000)
    shot(page, "js-1-data")

    page.get_by_role("link", name="Train", exact=True).click()
    page.fill("#f-epochs", EPOCHS)
    page.get_by_role("button", name="Train", exact=True).click()
    page.locator("#previews audio").first.wait_for(timeout=90_000)  # a preview player
    wait_until(page, lambda: chart_points(page) >= 2, 60, "two points on the chart")
    assert page.locator("#train-page, .train-page.live").count() >= 1  # the socket is open
    shot(page, "js-2-training")

    page.get_by_role("button", name="Cancel").click()
    page.get_by_text(re.compile(r"Training stopped at epoch \d+ of 20")).wait_for(timeout=60_000)
    stopped_at = epoch_shown(page)
    points = chart_points(page)
    assert stopped_at >= 2 and points == stopped_at
    page.get_by_role("button", name="Resume Training").wait_for(timeout=30_000)
    shot(page, "js-3-cancelled")

    page.get_by_role("button", name="Resume Training").click()
    wait_until(page, lambda: epoch_shown(page) > stopped_at, 90, "the epoch counter to continue")
    wait_until(page, lambda: chart_points(page) > points, 30, "more points on the chart")
    assert page.locator("#previews audio").count() >= stopped_at  # the earlier previews are still there
    shot(page, "js-4-resumed")

    page.get_by_role("button", name="Cancel").click()
    page.get_by_text(re.compile(r"Training stopped at epoch \d+ of 20")).wait_for(timeout=60_000)
    watch.settle(page)
    assert watch.errors == [] and watch.violations == []
    context.close()


def test_the_journey_without_javascript(server, browser):
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    watch = CspWatch(context, page)
    page.goto(f"{server}/data?token={TOKEN}")
    assert page.url == f"{server}/data"

    page.get_by_role("button", name="Use demo sounds").click()  # a plain form post, then a redirect
    wait_until(page, lambda: "“demo” now has 24 files" in page.content(), 60, "the import", reload_every=0.5)
    shot(page, "nojs-1-data")

    page.get_by_role("link", name="Train", exact=True).click()
    page.fill("#f-epochs", EPOCHS)
    page.get_by_role("button", name="Train", exact=True).click()
    assert page.url == f"{server}/train"
    assert page.locator('noscript').count() >= 1 and 'http-equiv="refresh"' in page.content()
    wait_until(page, lambda: page.locator("#previews audio").count() >= 1 and chart_points(page) >= 2, 90,
               "a preview and two chart points", reload_every=1.0)
    shot(page, "nojs-2-training")

    page.get_by_role("button", name="Cancel").click()
    wait_until(page, lambda: "Training stopped at epoch" in page.content(), 60, "the run to stop", reload_every=0.5)
    stopped_at = epoch_shown(page)
    points = chart_points(page)
    assert page.get_by_role("button", name="Resume Training").count() == 1
    shot(page, "nojs-3-cancelled")

    page.get_by_role("button", name="Resume Training").click()
    wait_until(page, lambda: epoch_shown(page) > stopped_at and chart_points(page) > points, 90,
               "the history to continue", reload_every=1.0)
    shot(page, "nojs-4-resumed")
    page.get_by_role("button", name="Cancel").click()  # the server checkpoints it as it stops
    assert page.url == f"{server}/train"
    watch.settle(page)
    assert watch.violations == []
    context.close()


def test_a_new_run_starts_from_a_model_in_the_library(server, browser):
    """After the journeys above the Library holds models: pick one under Start from, train,
    watch the chart fill, and find the new model's origin on its Library card."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{server}/?token={TOKEN}")
    page.goto(f"{server}/train")
    if page.get_by_text("Nothing to train on yet").count():  # run alone: make the data first
        page.goto(f"{server}/data")
        page.get_by_role("button", name="Use demo sounds").click()
        page.get_by_text("“demo” now has 24 files").wait_for(timeout=60_000)
        page.goto(f"{server}/train")
    if page.locator("#start-from").count() == 0:  # run alone: a model to start from, trained here
        page.fill("#f-epochs", "2")
        page.get_by_role("button", name="Train", exact=True).click()
        page.get_by_text(re.compile(r"Training complete: 2 epochs")).wait_for(timeout=90_000)
        page.goto(f"{server}/train")
    options = page.locator("#start-from option")
    assert options.count() >= 2 and options.first.inner_text().startswith("Scratch")
    base_label = options.nth(1).inner_text()
    page.select_option("#start-from", index=1)
    page.fill("#f-epochs", "3")
    page.get_by_role("button", name="Train", exact=True).click()
    page.get_by_text(re.compile(r"Training complete: 3 epochs")).wait_for(timeout=90_000)
    assert chart_points(page) == 3
    shot(page, "start-from-1-trained")
    page.goto(f"{server}/library")
    newest = page.locator("li.model").first
    assert newest.locator("dt", has_text="Started from").count() == 1
    assert newest.locator("dd", has_text=base_label.split(" · ")[0]).count() >= 1
    shot(page, "start-from-2-library")
    context.close()
