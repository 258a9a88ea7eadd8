"""The Library tab over HTTP (TestClient) with a real tiny trained model:
models (rename, delete, download) and generated sounds (play, download, delete)."""
from __future__ import annotations

import io
import json
import re
import zipfile

import pytest
import soundfile as sf
from starlette.testclient import TestClient

from conftest_web import HX, make_dataset
from generation_helpers import TINY_MODEL, copy_of_trained
from sda_web.library import SoundRequest, generate_sounds, list_models, list_sounds, load_sound
from sda_web.training.runs import mark_live
from sda_web.web.app import create_app

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def data(trained_demo, tmp_path_factory):
    data = copy_of_trained(trained_demo, tmp_path_factory, "web-library")
    model_id = list_models(data)[0].model_id
    generate_sounds(data, SoundRequest(model=model_id, seed=1, variations=2, duration_s=1.0))
    generate_sounds(data, SoundRequest(model=model_id, seed=2, duration_s=1.0, controls={"brightness": 1.0},
                                       format="flac", bits=24))
    return data


@pytest.fixture(scope="module")
def client(data):
    with TestClient(create_app(data)) as c:
        yield c


def sound_ids(html: str) -> list[str]:
    return re.findall(r'<article class="sound" id="sound-([^"]+)"', html)


def test_empty_library_says_what_to_do(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with TestClient(create_app(data)) as c:
        page = c.get("/library").text
        assert "No trained models yet" in page and "No generated sounds yet" in page and 'href="/data"' in page
        make_dataset(data, tmp=tmp_path)
        assert 'href="/train"' in c.get("/library").text


def test_models_and_sounds_are_listed_newest_first(client, data):
    (model,) = list_models(data)
    page = client.get("/library").text
    assert f"<h3>{model.name}</h3>" in page
    assert '<span class="status status-completed">completed</span>' in page
    for text in ("<dd>demo</dd>", f"<dd>{TINY_MODEL['epochs']}</dd>", f"<dd>{model.best_val_loss:.4f}</dd>", model.created[:10]):
        assert text in page, text
    assert f'href="/generate?model={model.model_id}"' in page and "Open in Generate" in page
    assert f'href="/library/models/{model.model_id}/download"' in page
    assert f'href="/library/models/{model.model_id}/delete"' in page  # the no-JS confirmation page
    ids = sound_ids(page)
    assert ids == [s.sound_id for s in list_sounds(data)] and len(ids) == 3
    assert load_sound(data, ids[0]).request.seed == 2  # the newest request first
    assert page.count('<audio controls preload="none" src="/library/sounds/') == 3
    assert "brightness +1" in page and "seed 1" in page and "FLAC 24-bit" in page


def test_rename_is_kept_on_disk_and_shown(client, data):
    (model,) = list_models(data)
    r = client.post(f"/library/models/{model.model_id}/rename", data={"name": "  Glass  bells "},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/library?done=renamed"
    assert json.loads((model.run_dir / "model.json").read_text()) == {"name": "Glass bells"}
    page = client.get(r.headers["location"]).text
    assert "<h3>Glass bells</h3>" in page and "Model renamed." in page
    assert "Glass bells" in client.get("/generate").text

    r = client.post(f"/library/models/{model.model_id}/rename", data={"name": "   "})
    assert r.status_code == 422 and "A model name cannot be empty." in r.text and "<h3>Glass bells</h3>" in r.text
    r = client.post(f"/library/models/{model.model_id}/rename", data={"name": "latest"}, headers=HX)
    assert r.status_code == 422 and r.text.lstrip().startswith('<div id="library"') and "is reserved" in r.text
    r = client.post(f"/library/models/{model.model_id}/rename", data={"name": "Wind chimes"}, headers=HX)
    assert r.status_code == 200 and "<h3>Wind chimes</h3>" in r.text and "Model renamed." in r.text
    assert list_models(data)[0].name == "Wind chimes"
    assert client.post("/library/models/ghost/rename", data={"name": "x"}).status_code == 404


def test_downloads_have_the_right_type_and_name(client, data):
    (model,) = list_models(data)
    r = client.get(f"/library/models/{model.model_id}/download")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert re.search(r'attachment; filename="[A-Za-z0-9._-]+\.sda-model\.zip"', r.headers["content-disposition"])
    assert {"model.pt", "analysis.json", "config.json"} <= set(zipfile.ZipFile(io.BytesIO(r.content)).namelist())

    wav_id, flac_id = [s.sound_id for s in list_sounds(data) if s.request.format == "wav"][0], \
        [s.sound_id for s in list_sounds(data) if s.request.format == "flac"][0]
    wav, flac = load_sound(data, wav_id), load_sound(data, flac_id)

    r = client.get(f"/library/sounds/{flac_id}/audio")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/flac" and r.content[:4] == b"fLaC"
    r = client.get(f"/library/sounds/{wav_id}/audio", headers={"Range": "bytes=0-99"})
    assert r.status_code == 206 and len(r.content) == 100  # the player can seek

    r = client.get(f"/library/sounds/{wav_id}/download")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    assert r.content == wav.audio_path.read_bytes()
    assert r.headers["content-disposition"].startswith("attachment") and "-seed1-v" in r.headers["content-disposition"]

    r = client.get(f"/library/sounds/{wav_id}/download?format=flac&bits=24&rate=48000")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/flac"
    assert re.search(r'attachment; filename=".*-seed1-v\d\.flac"', r.headers["content-disposition"])
    info = sf.info(io.BytesIO(r.content))
    assert info.samplerate == 48000 and info.subtype == "PCM_24"

    r = client.get(f"/library/sounds/{flac_id}/download?format=wav&bits=16&rate=44100")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    assert sf.info(io.BytesIO(r.content)).samplerate == 44100

    for query in ("format=mp3", "bits=8", "rate=22050", "rate=" + "9" * 300):
        r = client.get(f"/library/sounds/{wav_id}/download?{query}")
        assert r.status_code == 422, query
    assert flac.sound_id in client.get("/library").text


@pytest.mark.parametrize("path", [
    "/library/sounds/..%2F..%2F..%2Fetc%2Fpasswd/audio",
    "/library/sounds/%2e%2e/audio",
    "/library/sounds/..%2Fruns/waveform.svg",
    "/library/sounds/20200101-000000000000-abcdef-v1/audio",  # well formed, not there
    "/library/sounds/20200101-000000000000-abcdef-v1/download",
    "/library/sounds/x/waveform.svg",
    "/library/models/..%2F..%2Fetc/download",
    "/library/models/%2e%2e/download",
    "/library/models/.hidden/download",
    "/library/models/ghost/download",
    "/library/models/ghost/delete",
])
def test_file_routes_refuse_anything_but_a_known_id(client, path):
    r = client.get(path)
    assert r.status_code == 404 and "root:" not in r.text


def test_delete_a_sound_with_and_without_javascript(client, data):
    first, second = [s for s in list_sounds(data) if s.request.seed == 1]
    r = client.post(f"/library/sounds/{first.sound_id}/delete", data={"back": "library"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/library?done=sound-deleted"
    assert not first.sound_dir.exists()
    page = client.get(r.headers["location"]).text
    assert "Sound deleted." in page and first.sound_id not in page and second.sound_id in page
    r = client.post(f"/library/sounds/{second.sound_id}/delete", data={"back": "generate"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/generate?batch={second.batch}"
    assert not second.sound_dir.exists()
    assert client.post(f"/library/sounds/{second.sound_id}/delete", headers=HX).status_code == 404
    (last,) = list_sounds(data)
    r = client.post(f"/library/sounds/{last.sound_id}/delete", headers=HX)
    assert r.status_code == 200 and r.text == "" and list_sounds(data) == []
    assert "No generated sounds yet" in client.get("/library").text


def test_delete_a_model_after_confirmation(trained_demo, tmp_path_factory):
    data = copy_of_trained(trained_demo, tmp_path_factory, "web-library-delete")
    (model,) = list_models(data)
    generate_sounds(data, SoundRequest(model=model.model_id, seed=4, duration_s=0.5))
    with TestClient(create_app(data)) as c:
        page = c.get(f"/library/models/{model.model_id}/delete").text
        assert f"Delete the model “{model.name}”?" in page and "1 sound you made with it stays" in page
        assert f'action="/library/models/{model.model_id}/delete"' in page

        mark_live(model.model_id, True)  # what a runner does while it trains the run
        run_json = model.run_dir / "run.json"
        record = json.loads(run_json.read_text())
        try:
            run_json.write_text(json.dumps({**record, "status": "running"}))
            assert '<span class="status status-running">training</span>' in c.get("/library").text
            r = c.post(f"/library/models/{model.model_id}/delete", headers=HX)
            assert r.status_code == 409 and "is training right now" in r.text and model.run_dir.exists()
        finally:
            mark_live(model.model_id, False)
            run_json.write_text(json.dumps(record))

        r = c.post(f"/library/models/{model.model_id}/delete", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/library?done=deleted"
        assert not model.run_dir.exists() and list_models(data) == []
        page = c.get(r.headers["location"]).text
        assert "Model deleted." in page and "No trained models yet" in page
        assert "(model deleted)" in page and len(sound_ids(page)) == 1  # its sounds are kept
        assert c.post(f"/library/models/{model.model_id}/delete").status_code == 404
        assert "No model to generate with" in c.get("/generate").text


def test_bad_query_parameters_never_500(client):
    for query in ("model=../x", "done=hacked", "done=" + "x" * 500, "model=ghost"):
        assert client.get(f"/library?{query}").status_code in (200, 422), query
    assert client.get("/library?done=hacked").status_code == 422
    assert client.get("/library?model=ghost").status_code == 200


def test_every_url_respects_the_root_path(data):
    with TestClient(create_app(data, root_path="/sda")) as c:
        page = c.get("/sda/library").text
        links = re.findall(r'(?:href|src|action|formaction|hx-get|hx-post)="(/[^"]*)"', page)
        links += re.findall(r"url\('(/[^']*)'\)", page)
        assert links and all(link.startswith("/sda/") for link in links), links
        (model,) = list_models(data)
        r = c.post(f"/sda/library/models/{model.model_id}/rename", data={"name": "Prefixed"}, follow_redirects=False)
        assert r.headers["location"] == "/sda/library?done=renamed"
