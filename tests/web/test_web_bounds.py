"""Every form field and query parameter has bounds: bad values get 422 and a sentence, never a 500.

The table covers the cases a person would think of; hypothesis then throws
random values and random bytes at the form handlers and the audio reader.
"""
from __future__ import annotations

import os
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from conftest_web import HX, ScriptedRunner, make_dataset
from sda_web.audio.io import AudioRejected, inspect_audio
from sda_web.web.app import create_app
from sda_web.web.uploads import UploadLimits

pytestmark = pytest.mark.timeout(120)
FORM = {"preset": "balanced", "epochs": "5", "learning_rate": "0.001", "dropout": "0.1",
        "weight_decay": "0.0001", "kl_weight_max": "0.1"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One app for the module: a dataset, a finished run to resume, a scripted runner."""
    from conftest_web import metrics
    from sda_web.training.runs import save_history, write_run_record

    root = tmp_path_factory.mktemp("bounds")
    data = root / "data"
    data.mkdir()
    make_dataset(data, "tones", count=3, tmp=root)
    run_dir = data / "runs" / "tones-1"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "latest.pt").write_bytes(b"x")
    save_history(run_dir, [metrics(e, total=4) for e in range(1, 5)])
    write_run_record(run_dir, run_id="tones-1", dataset="tones", status="completed", created="2024-01-01T00:00:00",
                     epochs_done=4, total_epochs=4, best_val_loss=0.2)
    runner = ScriptedRunner()
    app = create_app(data, runner=runner, upload_limits=UploadLimits.from_mb(1, 2))
    with TestClient(app) as client:
        yield client, runner, data, root


def snapshot(root: Path, data: Path) -> set[str]:
    """Every path under the test's folder except inside the data dir."""
    return {str(p) for p in root.rglob("*") if data not in p.parents and p != data}


@pytest.mark.parametrize("path,message", [
    ("/train?preset=reckless", "preset in the address must be one of"),
    ("/train?preset=" + "x" * 5000, "too long"),
    ("/train?log_scale=maybe", "log-scale setting in the address must be one of"),
    ("/train/config?preset=%00", "preset in the address must be one of"),
    ("/data?job=abc", "import number in the address"),
    ("/data?job=" + "9" * 50, "import number in the address"),
    ("/data?deleted=" + "d" * 500, "too long"),
])
def test_bad_query_values_are_422_with_a_sentence(world, path, message):
    client = world[0]
    for headers in ({}, HX):
        r = client.get(path, headers=headers)
        assert r.status_code == 422 and message in r.text, (path, r.text[:300])


def test_unknown_query_parameters_are_ignored(world):
    client = world[0]
    # the no-JS "Apply preset" button sends the whole settings form as a query
    r = client.get("/train?preset=conservative&epochs=abc&learning_rate=&_=123")
    assert r.status_code == 200 and 'value="conservative" selected' in r.text
    assert client.get("/data?deleted=../../etc").status_code == 200  # not a dataset name: no message shown


@pytest.mark.parametrize("changes,message", [
    ({"epochs": "1e309"}, "Max epochs must be a finite number"),
    ({"epochs": "9" * 500}, "Max epochs must be a number between 1 and 10000"),
    ({"epochs": "-3"}, "Max epochs must be between 1 and 10000"),
    ({"epochs": "10001"}, "Max epochs must be between 1 and 10000"),
    ({"epochs": "nan"}, "Max epochs must be a finite number"),
    ({"learning_rate": "1e-300"}, "Learning rate must be between"),
    ({"learning_rate": "0x10"}, "Learning rate must be a number"),
    ({"dropout": "½"}, "Dropout must be a number"),
    ({"preset": "reckless"}, "preset"),
    ({"epochs": None}, "Max epochs is required"),
])
def test_bad_settings_are_422_inline(world, changes, message):
    client, runner = world[0], world[1]
    form = {k: v for k, v in {**FORM, **changes}.items() if v is not None}
    before = len(runner.started)
    for headers in ({}, HX):
        r = client.post("/train/start", data=form, headers=headers)
        assert r.status_code == 422 and message in r.text, r.text[:500]
    assert len(runner.started) == before


def test_oversized_and_odd_bodies_are_refused_with_a_sentence(world):
    client = world[0]
    r = client.post("/train/start", data={**FORM, "notes": "n" * 70_000})
    assert r.status_code == 413 and "too large" in r.text
    r = client.post("/train/start", data=FORM, files=[("sneaky", ("x.bin", b"\0" * 10, "application/octet-stream"))])
    assert r.status_code == 422 and "could not be read" in r.text
    r = client.post("/train/start", content=b"\xff\xfe garbage",
                    headers={"content-type": "multipart/form-data; boundary=zz"})
    assert r.status_code == 422
    r = client.post("/train/start", json={"epochs": 5})
    assert r.status_code == 422 and "is required" in r.text
    r = client.post("/data/select", data={f"f{i}": "x" for i in range(100)})
    assert r.status_code == 422 and "could not be read" in r.text


@pytest.mark.parametrize("form,status,message", [
    ({}, 422, "Choose a run to resume"),
    ({"run_id": "../../etc"}, 404, "is not a valid run id"),
    ({"run_id": "ghost"}, 404, "There is no run called"),
    ({"run_id": "tones-1", "epochs": "abc"}, 422, "Max epochs must be a number"),
    ({"run_id": "tones-1", "epochs": "1" + "0" * 30}, 422, "Max epochs must be between 1 and 10000"),
    ({"run_id": "tones-1", "epochs": "3"}, 422, "already trained all 4 epochs"),
])
def test_resume_values_are_bounded(world, form, status, message):
    client, runner = world[0], world[1]
    before = len(runner.started)
    r = client.post("/train/resume", data=form, headers=HX)
    assert r.status_code == status and message in r.text, r.text[:300]
    assert len(runner.started) == before


def test_select_and_delete_take_exact_names_only(world):
    client, data = world[0], world[2]
    assert client.post("/data/select", data={}).status_code == 422
    for name in ("tones%20", "..%2Ftones", "TONES", "tones!!!", "%2e%2e"):
        r = client.post(f"/data/datasets/{name}/delete", headers=HX)
        assert r.status_code == 404 and ("There is no dataset called" in r.text or "nothing at this address" in r.text)
        assert client.get(f"/data/datasets/{name}/delete").status_code == 404
    assert (data / "datasets" / "tones" / "manifest.json").exists()


# ---- random input -------------------------------------------------------------------

FIELD_NAMES = ["preset", "epochs", "learning_rate", "dropout", "weight_decay", "kl_weight_max", "run_id", "name",
               "log_scale", "token", "chart_options"]
text_values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "0", "-0", "1e309", "-1e309", "nan", "inf", "1" * 400, "0.5", "10000", "10001", "1e-7",
                     "balanced", "reckless", "tones", "tones-1", "../..", "/etc/passwd", "%00", "\x00", "١٢",
                     "1_000", " 3 ", "0x1f", "9" * 5000]),
    st.integers(min_value=-(10 ** 30), max_value=10 ** 30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
forms = st.dictionaries(st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=10)), text_values, max_size=8)
POSTS = ["/train/start", "/train/resume", "/train/cancel", "/data/select", "/data/demo-not-here"]
GETS = ["/train", "/train/config", "/data", "/generate", "/library", "/"]


@settings(database=None, max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(POSTS), form=forms, htmx=st.booleans())
def test_random_forms_never_500(world, path, form, htmx):
    client, runner, data, root = world
    before = snapshot(root, data)
    r = client.post(path, data=form, headers=HX if htmx else {}, follow_redirects=False)
    assert r.status_code < 500, (path, form, r.text[:300])
    assert snapshot(root, data) == before
    if runner.is_running:  # a random form that happened to be valid: end the scripted run
        from conftest_web import complete

        runner.emit(complete())


@settings(database=None, max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(GETS), query=forms, segment=st.text(alphabet=string.printable, max_size=30))
def test_random_queries_and_path_segments_never_500(world, path, query, segment):
    client, _, data, root = world
    before = snapshot(root, data)
    assert client.get(path, params=query).status_code < 500
    for template in ("/data/imports/{}", "/data/datasets/{}/delete", "/train/runs/{}/previews/epoch_0001_recon.wav",
                     "/train/runs/tones-1/previews/{}", "/static/{}"):
        from urllib.parse import quote

        assert client.get(template.format(quote(segment, safe=""))).status_code < 500
    assert client.post("/data/datasets/{}/delete".format(quote(segment + "x", safe=""))).status_code < 500
    assert snapshot(root, data) == before


AUDIO_HEADS = [b"", b"RIFF\x24\x00\x00\x00WAVEfmt ", b"RIFF\xff\xff\xff\xffWAVEfmt \x10\x00\x00\x00\x01\x00",
               b"fLaC\x00\x00\x00\x22", b"OggS\x00\x02", b"FORM\x00\x00\x00\x00AIFF", b"ID3\x03\x00", b"\xff\xfb\x90"]


@settings(database=None, max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(head=st.sampled_from(AUDIO_HEADS), body=st.binary(max_size=4096))
def test_the_audio_reader_only_ever_rejects_random_bytes(tmp_path_factory, head, body):
    folder = tmp_path_factory.mktemp("rand")
    path = folder / "random.wav"
    path.write_bytes(head + body)
    try:
        info = inspect_audio(path)
    except AudioRejected as exc:
        assert exc.reason and exc.reason.endswith(".")
    else:  # random bytes that decode: the facts must be sane
        assert info.frames > 0 and info.sample_rate > 0 and 1 <= info.channels
    assert sorted(os.listdir(folder)) == ["random.wav"]


@settings(database=None, max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(blobs=st.lists(st.tuples(st.text(max_size=30), st.sampled_from(AUDIO_HEADS), st.binary(max_size=2048)),
                      min_size=1, max_size=4),
       name=st.text(max_size=70))
def test_random_uploads_never_500_and_stay_in_the_data_dir(world, blobs, name):
    client, _, data, root = world
    before = snapshot(root, data)
    files = [("files", (filename or "f", head + body, "audio/wav")) for filename, head, body in blobs]
    r = client.post("/data/upload", data={"name": name}, files=files, headers=HX)
    assert r.status_code < 500, r.text[:300]
    client.app.state.imports and _drain(client)
    assert snapshot(root, data) == before
    uploads = data / ".uploads"
    assert not uploads.exists() or not any(uploads.iterdir())


def _drain(client) -> None:
    """Wait for the import jobs, so the next example starts clean."""
    import time

    deadline = time.monotonic() + 30
    while client.app.state.imports.active():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.05)  # the temp folder is removed just after the job is marked finished
