"""Pages, partials and forms over HTTP (TestClient), with a scripted runner."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from starlette.testclient import TestClient

from conftest_web import HX, ScriptedRunner, make_dataset, metrics, wait_import, write_tones
from sda_web.storage import atomic_write_json
from sda_web.training import get_adaptive_config
from sda_web.web.app import create_app

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def runner():
    return ScriptedRunner()


@pytest.fixture
def client(data, runner):
    with TestClient(create_app(data, runner=runner)) as c:
        yield c


def test_tabs_and_empty_states(client):
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/data"
    for path, text in [("/data", "Use demo sounds"), ("/train", "Nothing to train on yet"),
                       ("/generate", "Generate"), ("/library", "Library")]:
        r = client.get(path)
        assert r.status_code == 200 and text in r.text
        for tab in ("Data", "Train", "Generate", "Library"):
            assert f">{tab}</a>" in r.text
    r = client.get("/train")
    assert 'href="/data"' in r.text and "Go to the Data tab" in r.text
    assert client.get("/nowhere").status_code == 404


def test_demo_import_lists_and_selects_the_dataset(client):
    r = client.post("/data/demo", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/data?job=1"
    r = wait_import(client)
    assert "“demo” now has 24 files" in r.text and 'hx-swap-oob="true"' in r.text
    page = client.get("/data").text
    assert "demo" in page and "24 files" in page and "current" in page
    assert client.get("/", follow_redirects=False).headers["location"] == "/train"
    # pressing it again adds nothing twice
    r = client.post("/data/demo", headers=HX)
    assert r.status_code == 200 and 'hx-trigger="every 1s"' in r.text
    assert "24 were already in it" in wait_import(client, "2").text


def test_upload_streams_files_and_reports_rejects(client, data, tmp_path):
    good = write_tones(tmp_path / "up", count=3)
    files = [("files", (p.name, p.read_bytes(), "audio/wav")) for p in good]
    files.append(("files", ("notes.wav", b"this is not audio", "audio/wav")))
    r = client.post("/data/upload", data={"name": "mine"}, files=files, headers=HX)
    assert r.status_code == 200 and 'id="import-status"' in r.text
    r = wait_import(client)
    assert "“mine” now has 3 files" in r.text and "1 rejected" in r.text and "notes.wav" in r.text
    page = client.get("/data").text
    assert "notes.wav" in page and "1 file rejected" in page
    assert not any((data / ".uploads").iterdir())  # temp files removed


def test_upload_of_only_unusable_files_lists_every_reason(client, data):
    files = [("files", (f"bad{i}.wav", b"nope" * i, "audio/wav")) for i in range(1, 5)]
    r = client.post("/data/upload", data={"name": "junk"}, files=files, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/data?job=1"
    wait_import(client)
    page = client.get(r.headers["location"]).text
    assert 'http-equiv="refresh"' not in page
    assert "nothing was imported" in page and all(f"bad{i}.wav" in page for i in range(1, 5))
    assert not (data / "datasets" / "junk").exists()


def test_upload_without_files_is_a_clear_error(client):
    r = client.post("/data/upload", data={"name": "x"}, files=[("files", ("", b"", "application/octet-stream"))])
    assert r.status_code == 422 and "Choose one or more sound files" in r.text


def test_select_and_delete_with_confirmation(client, data):
    make_dataset(data, "one")
    make_dataset(data, "two")
    r = client.post("/data/select", data={"name": "one"}, follow_redirects=False)
    assert r.status_code == 303
    assert re.search(r'class="ds current">\s*<div class="ds-head">\s*<h3>one</h3>', client.get("/data").text)
    r = client.post("/data/select", data={"name": "ghost"}, headers=HX)
    assert r.status_code == 404 and "no dataset called" in r.text
    # no-JS confirmation page, then the POST
    r = client.get("/data/datasets/one/delete")
    assert "Delete “one”?" in r.text and 'method="post"' in r.text
    r = client.post("/data/datasets/one/delete", follow_redirects=False)
    assert r.status_code == 303 and "deleted=one" in r.headers["location"]
    page = client.get("/data?deleted=one").text
    assert "Deleted the dataset “one”" in page and "<h3>one</h3>" not in page
    r = client.post("/data/datasets/two/delete", headers=HX)
    assert r.status_code == 200 and 'id="datasets"' in r.text and "No datasets yet" in r.text


def test_train_page_form_and_preset_fields(client, data):
    make_dataset(data, "tones")
    page = client.get("/train").text
    for name in ("preset", "f-epochs", "f-learning_rate", "f-dropout", "f-weight_decay", "f-kl_weight_max"):
        assert f'<label for="{name}">' in page and f'id="{name}"' in page
    assert "<details" in page and "<summary>Advanced</summary>" in page
    assert 'ws-connect="/train/ws"' in page and "Resume Training" not in page
    assert re.search(r"<button[^>]*>Cancel</button>", page) and "disabled>Cancel" in page
    balanced = client.get("/train/config?preset=balanced", headers=HX).text
    conservative = client.get("/train/config?preset=conservative", headers=HX).text
    assert balanced.startswith('<div id="config-fields"') and balanced != conservative
    # no-JS: the preset goes in the query string
    assert 'value="conservative" selected' in client.get("/train?preset=conservative").text


@pytest.mark.parametrize("field,value,message", [
    ("epochs", "0", "Max epochs must be between 1 and 10000"),
    ("epochs", "2.5", "Max epochs must be a whole number"),
    ("learning_rate", "abc", "Learning rate must be a number"),
    ("dropout", "0.9", "Dropout must be between 0 and 0.5"),
    ("weight_decay", "0.5", "Weight decay must be between 0 and 0.01"),
    ("kl_weight_max", "", "KL weight max is required"),
])
def test_invalid_settings_come_back_inline_and_nothing_starts(client, data, runner, field, value, message):
    make_dataset(data, "tones")
    form = {"preset": "balanced", "epochs": "5", "learning_rate": "0.001", "dropout": "0.1",
            "weight_decay": "0.0001", "kl_weight_max": "0.1", field: value}
    for headers in ({}, HX):
        r = client.post("/train/start", data=form, headers=headers, follow_redirects=False)
        assert r.status_code == 422
        assert message in r.text and f'aria-describedby="e-{field}"' in r.text
        assert f'value="{value}"' in r.text  # what was typed is kept
    if field in ("dropout", "weight_decay", "kl_weight_max"):
        assert "<details class=\"advanced\" open>" in r.text
    assert runner.started == []


def test_start_redirects_the_same_start_is_refused_and_another_is_queued(client, data, runner):
    make_dataset(data, "tones")
    form = {"preset": "balanced", "epochs": "7", "learning_rate": "0.002", "dropout": "0.1",
            "weight_decay": "0.0001", "kl_weight_max": "0.1"}
    r = client.post("/train/start", data=form, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/train"
    dataset, config = runner.started[0]
    assert dataset == "tones" and config.epochs == 7 and config.learning_rate == 0.002
    page = client.get("/train").text
    assert re.search(r'class="btn primary" type="submit" form="train-form">Add to queue<', page)
    assert 'http-equiv="refresh"' in page  # no-JS fallback while running
    r = client.post("/train/start", data=form, headers=HX)
    assert r.status_code == 409 and "The same run on “tones” is already training; nothing was added." in r.text
    r = client.post("/train/start", data=form)
    assert r.status_code == 409 and "is already training" in r.text
    assert len(runner.started) == 1
    r = client.post("/train/start", data={**form, "epochs": "9"}, headers=HX)  # another run waits its turn
    assert r.status_code == 202 and "Queued, 1st, starts after tones" in r.text
    assert len(runner.started) == 1 and "Queued" not in client.get("/train").text.split('id="train-queue"')[0]
    r = client.post("/train/cancel", headers=HX)
    assert r.status_code == 200 and runner.cancelled
    assert "Stopping…" in client.get("/train").text


def test_cancel_when_idle_says_so(client, data):
    make_dataset(data, "tones")
    r = client.post("/train/cancel")
    assert r.status_code == 409 and "Nothing is training" in r.text


def test_preview_files_are_served_by_run_and_name_only(client, data):
    folder = data / "runs" / "run-1" / "previews"
    folder.mkdir(parents=True)
    (folder / "epoch_0002_recon.wav").write_bytes(b"RIFF....WAVE")
    (data / "secret.wav").write_bytes(b"no")
    r = client.get("/train/runs/run-1/previews/epoch_0002_recon.wav")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    for bad in ["/train/runs/run-1/previews/secret.wav", "/train/runs/..%2F/previews/epoch_0002_recon.wav",
                "/train/runs/run-1/previews/..%2F..%2F..%2Fsecret.wav", "/train/runs/run-2/previews/epoch_0002_recon.wav",
                "/train/runs/.hidden/previews/epoch_0002_recon.wav"]:
        assert client.get(bad).status_code == 404, bad


def test_everything_respects_root_path(data, runner):
    make_dataset(data, "tones")
    app = create_app(data, root_path="/sda/", runner=runner)
    with TestClient(app, root_path="/sda") as c:
        r = c.get("/sda/", follow_redirects=False)
        assert r.headers["location"] == "/sda/train"
        page = c.get("/sda/train").text
        urls = re.findall(r'(?:href|src|action|hx-post|hx-get|ws-connect|formaction)="([^"]+)"', page)
        assert urls and all(u.startswith("/sda/") for u in urls), urls
        assert 'ws-connect="/sda/train/ws"' in page
        assert c.get("/sda/static/css/app.css").status_code == 200
        with c.websocket_connect("/sda/train/ws") as ws:
            assert 'id="loss-chart"' in ws.receive_text()


def test_train_page_shows_the_last_run_from_disk(data, runner):
    from sda_web.training.runs import save_history, write_run_record

    make_dataset(data, "tones")
    run_dir = data / "runs" / "tones-1"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "latest.pt").write_bytes(b"x")
    (run_dir / "previews").mkdir()
    for e in (2, 4):
        (run_dir / "previews" / f"epoch_{e:04d}_recon.wav").write_bytes(b"x")
    save_history(run_dir, [metrics(e, total=8) for e in range(1, 5)])
    write_run_record(run_dir, run_id="tones-1", dataset="tones", status="cancelled", created="2024-01-01T00:00:00",
                     epochs_done=4, total_epochs=8, best_val_loss=0.2, train_files=["tone_0.wav"])
    atomic_write_json(run_dir / "config.json", get_adaptive_config(5).with_overrides(epochs=8).to_dict())
    with TestClient(create_app(data, runner=runner)) as c:
        page = c.get("/train").text
        assert "Resume Training" in page and "from epoch 4 of 8" in page
        assert "Training stopped at epoch 4 of 8" in page
        assert page.count("<audio controls preload=\"none\"") == 2 and "Epoch 4</figcaption>" in page
        assert "Epoch 4/8" in page
        svg = re.search(r"<svg.*?</svg>", page, re.S).group(0)
        root = ET.fromstring(svg)
        lines = root.findall(".//{http://www.w3.org/2000/svg}polyline")
        assert len(lines) == 2 and all(len(l.get("points").split()) == 4 for l in lines)  # one point per epoch per curve
        r = c.post("/train/resume", data={"run_id": "tones-1"}, follow_redirects=False)
        assert r.status_code == 303 and runner.started == [("tones-1", None)]


def test_page_weight_of_the_first_train_load(client, data):
    make_dataset(data, "tones")
    page = client.get("/train")
    total = len(page.content)
    for ref in re.findall(r'(?:href|src)="(/static/[^"]+)"', page.text):
        total += len(client.get(ref).content)
    assert total < 100_000, total
