"""Every tab in a real Chromium under the Content-Security-Policy, with JavaScript on and
off, at the root and under --root-path: no violation reported, and each tab still does
its job (upload, live socket, sliders, generate, delete). Also: no other site can
frame the app, and a page load after the first fetches only its HTML.

Violations are read from Chromium itself (DevTools' Audits issues and console),
so they are seen with JavaScript off too. Screenshots go to test-artifacts/.
"""
from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
import torch

from browser_helpers import ARTIFACTS, launched_chromium
from conftest_web import CspWatch, free_port, launch
from generation_helpers import copy_of_trained

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]
torch.set_num_threads(1)
TOKEN = "csp-test-token-51be"


class Server:
    """A real `sda serve` with its access log read line by line (which URLs the browser fetched)."""

    def __init__(self, data, prefix: str, token: str | None):
        self.port = free_port()
        self.prefix = prefix
        self.token = token
        extra = ["--log-level", "info", *(["--root-path", prefix] if prefix else []),
                 *(["--token", token] if token else [])]
        self.proc = launch(data, self.port, *extra)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(self.base + "/", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and self.proc.poll() is None, "sda serve did not start"
                time.sleep(0.05)

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def url(self, path: str) -> str:
        return self.base + self.prefix + path

    def fetched(self, since: int = 0) -> list[str]:
        """Paths requested since line `since` of the access log."""
        return [m.group(1) for line in self.lines[since:] if (m := re.search(r'"(?:GET|POST|HEAD) (\S+) HTTP', line))]

    def close(self) -> str:
        self.proc.send_signal(2)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.reader.join(timeout=5)
        return "".join(self.lines)


@pytest.fixture(scope="module", params=["root", "prefix"])
def server(trained_demo, request, tmp_path_factory):
    """At / with an access token (the LAN set-up), and under --root-path /sda on loopback."""
    data = copy_of_trained(trained_demo, tmp_path_factory, f"csp-{request.param}")
    prefix, token = ("", TOKEN) if request.param == "root" else ("/sda", None)
    running = Server(data, prefix, token)
    yield running
    out = running.close()
    assert "Traceback" not in out, out


@pytest.fixture(scope="module")
def browser():
    with launched_chromium() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def sounds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("csp-sounds")
    rate = 16000
    t = np.arange(int(rate * 1.5)) / rate
    paths = []
    for i, freq in enumerate((220, 330)):
        path = folder / f"tone_{i}.wav"
        sf.write(path, (0.4 * np.exp(-2 * t) * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate)
        paths.append(str(path))
    return paths


def open_app(browser, server, js: bool, tab: str = "/data"):
    context = browser.new_context(java_script_enabled=js, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    watch = CspWatch(context, page)
    if server.token:
        page.goto(server.url(f"{tab}?token={server.token}"))
    else:
        page.goto(server.url(tab))
    assert page.url == server.url(tab)
    return context, page, watch


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"csp-{name}.png"), full_page=True)


def tab(page, name: str) -> None:
    page.locator("nav.tabs").get_by_role("link", name=name, exact=True).click()
    page.wait_for_load_state()


def reload_until(page, predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)
        page.reload()


def test_the_detector_sees_a_violation(server, browser):
    """The watch is live: an inline <style>, an inline <script> and a string timer are refused and reported."""
    context, page, watch = open_app(browser, server, js=True)
    page.evaluate("""() => {
        const style = document.createElement('style'); style.textContent = 'body { color: red }';
        document.head.append(style);
        const script = document.createElement('script'); script.textContent = 'window.inlineRan = true';
        document.head.append(script);
        setTimeout('window.evalRan = true', 0);
    }""")
    watch.settle(page)
    assert page.evaluate("() => [window.inlineRan, window.evalRan, getComputedStyle(document.body).color]") == [
        None, None, "rgb(230, 232, 236)"]
    kinds = " ".join(watch.violations)
    assert "style-src" in kinds and "script-src" in kinds and "eval" in kinds.lower(), watch.violations
    context.close()


def test_every_tab_works_under_the_policy_with_javascript(server, browser, sounds):
    context, page, watch = open_app(browser, server, js=True)
    name = "js-" + ("prefix" if server.prefix else "root")

    # Train, on the trained demo run: the chart's hover tint comes from the stylesheet now
    tab(page, "Train")
    page.locator(".train-page.live").wait_for(timeout=30_000)  # app.js marks the page live when the socket opens
    assert page.locator("#loss-chart .hit > path").count() > 30
    assert page.eval_on_selector("#loss-chart .hit > path", "c => getComputedStyle(c).strokeOpacity") == "0"
    box = page.locator("#loss-chart svg").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    assert page.evaluate("() => getComputedStyle(document.querySelector('#loss-chart .hit > path:hover')).strokeOpacity") == "0.1"
    shot(page, f"{name}-train-chart")

    # Data: an htmx upload; app.js shows its progress and resets the form afterwards
    tab(page, "Data")
    page.set_input_files("#files", sounds)
    page.fill("#ds-name", "csp-js")
    page.get_by_role("button", name="Upload and import").click()
    page.get_by_text("“csp-js” now has 2 files").wait_for(timeout=60_000)
    assert page.input_value("#files") == ""
    # the progress handler ran: the template says max="1", the handler writes the bytes it saw
    assert page.eval_on_selector("form.upload progress", "p => p.max > 1 && p.value === p.max")
    shot(page, f"{name}-data")

    # Train, on the new dataset: the live socket opens again
    tab(page, "Train")
    page.locator(".train-page.live").wait_for(timeout=30_000)
    assert page.locator("#loss-chart svg").count() == 1
    shot(page, f"{name}-train")

    # Generate: a slider shows its value (app.js), the form makes a sound with its waveform
    tab(page, "Generate")
    page.fill("#g-c1", "1.5")
    assert page.inner_text("#g-o1") == "+1.5"
    page.fill("#g-amount", "0.5")
    assert page.inner_text("#g-amount-o") == "0.5"
    page.fill("#g-duration", "1")
    page.fill("#g-variations", "2")
    page.get_by_role("button", name="Generate").click()
    page.locator("#generate-work .sound").nth(1).wait_for(timeout=60_000)
    page.wait_for_function("() => [...document.querySelectorAll('img.wave')].every(i => i.complete && i.naturalWidth > 0)",
                           timeout=20_000)
    assert "?batch=" in page.url
    shot(page, f"{name}-generate")

    # Library: hx-confirm asks, htmx deletes the card
    tab(page, "Library")
    before = page.locator("article.sound").count()
    assert before >= 2
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("article.sound").first.get_by_role("button", name="Delete").click()
    page.wait_for_function(f"() => document.querySelectorAll('article.sound').length === {before - 1}", timeout=20_000)
    shot(page, f"{name}-library")

    watch.settle(page)
    assert watch.violations == [] and watch.errors == []
    context.close()


def test_every_tab_works_under_the_policy_without_javascript(server, browser, sounds):
    context, page, watch = open_app(browser, server, js=False)
    name = "nojs-" + ("prefix" if server.prefix else "root")

    page.set_input_files("#files", sounds)
    page.fill("#ds-name", "csp-nojs")
    page.get_by_role("button", name="Upload and import").click()  # a plain multipart post, then a redirect
    reload_until(page, lambda: "“csp-nojs” now has 2 files" in page.content(), 60, "the import")
    shot(page, f"{name}-data")

    tab(page, "Train")
    assert page.locator("#loss-chart svg").count() == 1 and "Train" in page.content()
    shot(page, f"{name}-train")

    tab(page, "Generate")
    page.fill("#g-duration", "1")
    since = len(server.lines)
    page.get_by_role("button", name="Generate").click()
    assert "?batch=" in page.url and page.locator("article.sound").count() == 1
    page.wait_for_load_state("networkidle")
    assert any(p.endswith("/waveform.svg") for p in server.fetched(since))  # the <img> loaded
    shot(page, f"{name}-generate")

    tab(page, "Library")
    before = page.locator("article.sound").count()
    page.locator("article.sound").first.get_by_role("button", name="Delete").click()  # a form post, then back
    assert page.locator("article.sound").count() == before - 1
    shot(page, f"{name}-library")

    watch.settle(page)
    assert watch.violations == [] and watch.errors == []
    context.close()


def test_no_other_site_can_frame_the_app(server, browser):
    """A page elsewhere (here: about:blank) puts the Library in a frame: the browser refuses to show it."""
    context, page, _ = open_app(browser, server, js=True)  # holds the token cookie, where there is one
    other = context.new_page()
    watch = CspWatch(context, other)
    other.set_content(f'<iframe src="{server.url("/library")}" width="800" height="600"></iframe>')
    other.wait_for_timeout(1500)
    (framed,) = [f for f in other.frames if f != other.main_frame]
    assert framed.locator("nav.tabs").count() == 0 and "Delete" not in framed.content()
    assert any("frame-ancestors" in v for v in watch.violations), watch.violations
    context.close()


def test_a_refusal_page_keeps_its_own_style(server, browser):
    """A form on another page posts here: the plain refusal page (401 without the SameSite cookie,
    else 403) shows with its inline <style>, allowed by hash, and nothing is reported."""
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    watch = CspWatch(context, page)
    page.set_content(f'<form method="post" action="{server.url("/data/demo")}"><button>go</button></form>')
    with page.expect_navigation():
        page.click("button")
    assert ("Access token required" if server.token else "Refused: request from another site") in page.content()
    assert page.eval_on_selector("body", "b => getComputedStyle(b).backgroundColor") == "rgb(21, 23, 28)"
    watch.settle(page)
    assert watch.violations == []
    context.close()


def test_a_second_page_load_fetches_only_html(server, browser):
    context, page, watch = open_app(browser, server, js=True)
    page.wait_for_load_state("networkidle")
    assert any("/static/vendor/htmx.min.js?v=" in p for p in server.fetched())
    for move in (lambda: tab(page, "Library"), lambda: tab(page, "Data"), page.reload):
        since = len(server.lines)
        move()
        page.wait_for_load_state("networkidle")
        fetched = server.fetched(since)
        assert fetched and not [p for p in fetched if "/static/" in p], fetched
    context.close()
