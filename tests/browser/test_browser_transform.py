"""The Generate tab's "Start from a sound" in a real browser (Debian's Chromium through
Playwright) against a real `sda serve` with a trained tiny model: upload a sound, see the
result with its original; morph; with JavaScript and without. Screenshots go to
test-artifacts/ (look at them when a test fails)."""
from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile as sf

from browser_helpers import ARTIFACTS, launched_chromium
from conftest_web import first_answer, free_port, launch, stop
from generation_helpers import copy_of_trained

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def server(trained_demo, tmp_path_factory):
    data = copy_of_trained(trained_demo, tmp_path_factory, "browser-transform")
    port = free_port()
    proc = launch(data, port)
    first_answer(port)
    yield f"http://127.0.0.1:{port}"
    out = stop(proc)
    assert "Traceback" not in out, out


@pytest.fixture(scope="module")
def browser():
    with launched_chromium() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def sound_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("upload") / "glass hit.wav"
    t = np.arange(int(0.9 * 44_100)) / 44_100
    sf.write(path, (0.4 * np.exp(-4 * t) * np.sin(2 * np.pi * 523 * t)).astype(np.float32), 44_100)
    return path


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_start_from_an_uploaded_sound_then_morph(server, browser, sound_file, javascript):
    name = "js" if javascript else "nojs"
    context = browser.new_context(java_script_enabled=javascript, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server + "/generate")
    assert not page.is_visible("#g-source-file")  # only the chosen start shows its fields (CSS, no script)
    page.check("#g-start-sound")
    assert page.is_visible("#g-source-file") and not page.is_visible("#g-blend-a")
    page.set_input_files("#g-source-file", str(sound_file))
    page.fill("#g-seed", "31")
    page.screenshot(path=str(ARTIFACTS / f"transform-form-{name}.png"), full_page=True)
    page.click("button.go")
    page.wait_for_selector(".started-from", timeout=90_000)
    assert re.search(r"/generate\?batch=\d{8}-\d{12}-[0-9a-f]{6}$", page.url)  # pushed (htmx) or redirected (no JS)
    assert "from glass hit.wav (uploaded)" in page.inner_text(".results-head .params")
    assert page.locator(".sound-grid .sound").count() == 1
    assert page.is_checked("#g-start-sound")
    assert page.eval_on_selector("#g-source", "s => s.options[s.selectedIndex].text") == "glass hit.wav"
    page.screenshot(path=str(ARTIFACTS / f"transform-result-{name}.png"), full_page=True)

    # Morph from a dataset sound to the upload, now one of the choices.
    page.check("#g-start-morph")
    assert page.is_visible("#g-blend-a") and not page.is_visible("#g-source-file")
    page.select_option("#g-blend-a", "demo_02_bell.wav")
    page.select_option("#g-blend-b", label="glass hit.wav")
    page.click("button.go")
    page.wait_for_function("() => document.querySelector('.results-head .params')?.innerText.includes('morph')",
                           timeout=90_000)
    assert "morph demo_02_bell.wav → glass hit.wav at 0.5" in page.inner_text(".results-head .params")
    assert page.locator(".started-from").count() == 0
    page.screenshot(path=str(ARTIFACTS / f"morph-result-{name}.png"), full_page=True)
    pack = page.get_attribute("a[href$='/pack.zip']", "href")
    response = page.request.get(server + pack)
    assert response.status == 200 and response.headers["content-type"] == "application/zip"
    assert errors == []
    context.close()
