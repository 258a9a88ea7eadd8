"""Clicks at the wrong moment: each gets a clear answer in the page, never a crash or a second run."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
from starlette.testclient import TestClient

from conftest_web import HX, ScriptedRunner, complete, make_dataset, started
from sda_web.web.app import create_app

pytestmark = pytest.mark.timeout(60)
FORM = {"preset": "balanced", "epochs": "5", "learning_rate": "0.001", "dropout": "0.1",
        "weight_decay": "0.0001", "kl_weight_max": "0.1"}


class SlowRunner(ScriptedRunner):
    """start() takes a while, as the real one does while it reads the dataset: a double click lands inside it."""

    def start(self, dataset, config, callback, device="auto", start_from=None):
        time.sleep(0.3)
        return super().start(dataset, config, callback, device)


@pytest.fixture
def setup(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    make_dataset(data, "tones", count=3, tmp=tmp_path)
    make_dataset(data, "other", count=2, tmp=tmp_path)
    from sda_web.web.selection import store_selection

    store_selection(data, "tones")
    runner = SlowRunner()
    with TestClient(create_app(data, runner=runner)) as client:
        yield client, runner, data


def test_double_clicked_train_starts_one_run_and_says_so(setup):
    """Four presses of the same Train at once: one run, and the other three are told it is training
    (the same request is never queued twice)."""
    client, runner, _ = setup
    answers = []

    def click(headers):
        answers.append(client.post("/train/start", data=FORM, headers=headers, follow_redirects=False))

    clicks = [threading.Thread(target=click, args=(h,)) for h in (HX, HX, {}, {})]
    for t in clicks:
        t.start()
    for t in clicks:
        t.join()
    assert len(runner.started) == 1
    codes = sorted(r.status_code for r in answers)
    assert codes.count(409) == 3 and (200 in codes or 303 in codes), codes
    for r in answers:
        if r.status_code == 409:
            assert "The same run on “tones” is already" in r.text and "nothing was added" in r.text


def test_cancel_when_nothing_runs(setup):
    client, runner, _ = setup
    for headers in (HX, {}):
        r = client.post("/train/cancel", headers=headers)
        assert r.status_code == 409 and "Nothing is training right now." in r.text
    assert runner.cancelled is False


def test_resume_while_running_is_refused_with_the_run_named(setup):
    client, runner, data = setup
    assert client.post("/train/start", data=FORM, follow_redirects=False).status_code == 303
    runner.emit(started(dataset="tones", total=5))
    for headers in (HX, {}):
        r = client.post("/train/resume", data={**FORM, "run_id": "run-1"}, headers=headers)
        assert r.status_code == 409 and "is training right now." in r.text
    assert len(runner.started) == 1
    runner.emit(complete(outcome="cancelled", epochs=1, total=5))


def test_deleting_the_dataset_a_run_uses_is_refused(setup):
    client, runner, data = setup
    assert client.post("/train/start", data=FORM, follow_redirects=False).status_code == 303
    for headers in (HX, {}):
        r = client.post("/data/datasets/tones/delete", headers=headers, follow_redirects=False)
        assert r.status_code == 409
        assert "“tones” is being used by the training run right now; cancel it on the Train tab" in r.text
    assert (data / "datasets" / "tones" / "manifest.json").exists()
    # another dataset can go
    r = client.post("/data/datasets/other/delete", headers=HX)
    assert r.status_code == 200 and "Deleted the dataset “other”" in r.text
    # once the run has ended, it can be deleted
    runner.emit(complete(outcome="cancelled", epochs=1, total=5))
    deadline = time.monotonic() + 5
    while client.app.state.hub.view.running:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert client.post("/data/datasets/tones/delete", headers=HX).status_code == 200
    assert not (data / "datasets" / "tones").exists()


def test_the_runners_own_run_counts_even_when_the_screen_shows_another(setup):
    """The hub may show an idle view (a reload between runs); the runner's active dataset still protects it."""
    client, runner, data = setup
    runner._running = True
    runner.last_session = SimpleNamespace(dataset="other")
    r = client.post("/data/datasets/other/delete", headers=HX)
    assert r.status_code == 409 and "being used by the training run" in r.text
    assert (data / "datasets" / "other").exists()
    runner._running = False


def test_deleting_while_an_import_fills_it_is_refused(setup):
    client, _, data = setup
    gate = threading.Event()
    client.portal.call(_start_blocked_import, client.app, gate)
    try:
        r = client.post("/data/datasets/tones/delete", headers=HX)
        assert r.status_code == 409 and "being imported into “tones”" in r.text
    finally:
        gate.set()


async def _start_blocked_import(app, gate):
    def work(job):
        gate.wait(10)
        raise ValueError("stopped by the test.")

    app.state.imports.start("tones", work)
