"""Start from a sound, morph, sample packs and model import over HTTP, against real
uvicorn servers (a real trained tiny model, real files uploaded as a browser sends them)."""
from __future__ import annotations

import io
import json
import re
import zipfile

import httpx
import numpy as np
import pytest
import soundfile as sf
from starlette.testclient import TestClient

from conftest_web import HX, first_answer, free_port, launch, stop
from generation_helpers import copy_of_trained
from sda_web.library import list_models, list_sounds, list_sources
from sda_web.web.app import create_app
from sda_web.web.uploads import UploadLimits

pytestmark = [pytest.mark.trains, pytest.mark.timeout(240)]


def wav_bytes(seconds=1.1, rate=44_100, freq=330.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    sf.write(buffer, (0.35 * np.exp(-2.5 * t) * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate, format="WAV")
    return buffer.getvalue()


class Server:
    def __init__(self, data):
        self.data, self.port = data, free_port()
        self.proc = launch(data, self.port)
        first_answer(self.port)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=120)

    def close(self) -> str:
        self.http.close()
        return stop(self.proc)


@pytest.fixture(scope="module")
def server(trained_demo, tmp_path_factory):
    running = Server(copy_of_trained(trained_demo, tmp_path_factory, "web-transform"))
    yield running
    out = running.close()
    assert "Traceback" not in out, out


@pytest.fixture(scope="module")
def model(server):
    return list_models(server.data)[0]


def fields(model, **changes) -> dict:
    base = {"model": model.model_id, "seed": "9", "variations": "2", "duration_s": "1", "variation_amount": "0.3",
            "start": "sound", "source": "", "blend_a": "", "blend_b": "", "blend_amount": "0.5",
            "control:brightness": "0", "format": "wav", "bits": "16", "rate": "model"}
    return {**base, **changes}


def params(html: str) -> str:
    return re.search(r'<p class="params">(.*?)</p>', html, re.S).group(1)


def error(html: str) -> str:
    return re.search(r'id="g-error" role="alert">([^<]*)<', html).group(1)


def test_start_from_an_uploaded_sound_without_javascript(server, model):
    before = len(list_sounds(server.data))
    r = server.http.post("/generate", data=fields(model), files={"source_file": ("my pluck.wav", wav_bytes())})
    assert r.status_code == 303, r.text
    page = server.http.get(r.headers["location"]).text
    assert len(list_sounds(server.data)) == before + 2
    assert "<span>from my pluck.wav (uploaded)</span>" in params(page) and "<span>seed 9</span>" in params(page)
    (source,) = re.findall(r'src="(/library/sources/src-[0-9a-f]{16}/audio)"', page)
    assert server.http.get(source).content == wav_bytes()  # the original, as it was uploaded
    assert f'src="{source}"' in server.http.get("/library").text  # the Library shows what it came from too
    players = re.findall(r'<audio controls preload="none" src="(/library/sounds/[^"]+/audio)"', page)
    assert len(players) == 2
    audio, rate = sf.read(io.BytesIO(server.http.get(players[0]).content), dtype="float32")
    assert rate == 48_000 and abs(len(audio) / rate - 1.1) < 0.011  # as long as the upload (a 48 kHz model)
    # The result shows its settings again: the upload is now a choice, selected.
    assert 'id="g-start-sound" checked' in page
    assert re.search(r'<optgroup label="Uploaded"><option value="src-[0-9a-f]{16}" selected>my pluck.wav</option>', page)


def test_start_from_a_dataset_file_with_htmx(server, model):
    r = server.http.post("/generate", data=fields(model, source="demo_04_pad.wav", variations="1"), headers=HX)
    assert r.status_code == 200 and r.text.lstrip().startswith('<div id="generate-work"')
    assert r.headers["HX-Push-Url"].startswith("/generate?batch=")
    assert "<span>from demo_04_pad.wav</span>" in params(r.text)
    assert '<option value="demo_04_pad.wav" selected>demo_04_pad.wav</option>' in r.text
    kept = [s for s in list_sources(server.data, None) if s.origin == "dataset"]
    assert [s.name for s in kept] == ["demo_04_pad.wav"] and kept[0].dataset == "demo"


def test_the_same_request_twice_gives_the_same_samples(server, model):
    made = []
    for _ in range(2):
        r = server.http.post("/generate", data=fields(model, variations="1", variation_amount="0.6",
                                                      **{"control:brightness": "1.5"}),
                             files={"source_file": ("same.wav", wav_bytes(freq=440.0))})
        page = server.http.get(r.headers["location"]).text
        (src,) = re.findall(r'<audio controls preload="none" src="(/library/sounds/[^"]+/audio)"', page)
        made.append(server.http.get(src).content)
    assert made[0] == made[1]


def test_morph_between_a_dataset_file_and_an_upload(server, model):
    r = server.http.post("/generate", data=fields(model, start="morph", blend_a="demo_02_bell.wav",
                                                  blend_amount="0.4", duration_s="1.5", variations="1"),
                         files={"blend_b_file": ("my snare.wav", wav_bytes(0.5, 22_050, 180.0))})
    assert r.status_code == 303, r.text
    page = server.http.get(r.headers["location"]).text
    assert "morph demo_02_bell.wav → my snare.wav at 0.4" in params(page)
    (src,) = re.findall(r'<audio controls preload="none" src="(/library/sounds/[^"]+/audio)"', page)
    audio, rate = sf.read(io.BytesIO(server.http.get(src).content))
    assert abs(len(audio) / rate - 1.5) < 1e-3
    assert 'id="g-start-morph" checked' in page


def test_unusable_input_is_one_sentence_in_the_page_and_nothing_is_kept(server, model):
    sounds, sources = len(list_sounds(server.data)), len(list_sources(server.data, None))
    r = server.http.post("/generate", data=fields(model), files={"source_file": ("notes.wav", b"just text" * 300)})
    assert r.status_code == 422
    assert error(r.text) == "notes.wav: Not an audio file soundfile can read (WAV, FLAC, OGG, MP3 or AIFF)."
    r = server.http.post("/generate", data=fields(model), headers=HX)
    assert r.status_code == 422 and error(r.text) == "Choose a sound to start from, or upload one."
    r = server.http.post("/generate", data=fields(model, start="morph", blend_a="demo_02_bell.wav"))
    assert r.status_code == 422 and "Choose two sounds to morph between" in error(r.text)
    r = server.http.post("/generate", data=fields(model, source="../../etc/passwd"))
    assert r.status_code == 422 and "is not a sound of the dataset" in error(r.text)
    assert (len(list_sounds(server.data)), len(list_sources(server.data, None))) == (sounds, sources)
    assert server.http.get("/library/sources/src-0000000000000000/audio").status_code == 404
    assert server.http.get("/library/sources/..%2F..%2Fetc/audio").status_code == 404


def test_a_sample_pack_of_a_batch(server, model):
    r = server.http.post("/generate", data=fields(model, start="average", variations="3", format="flac"))
    batch = r.headers["location"].split("batch=")[1]
    page = server.http.get(r.headers["location"]).text
    assert f'href="/library/batches/{batch}/pack.zip"' in page
    assert f'href="/library/batches/{batch}/pack.zip"' in server.http.get("/library").text
    pack = server.http.get(f"/library/batches/{batch}/pack.zip")
    assert pack.status_code == 200 and pack.headers["content-type"] == "application/zip"
    assert re.search(r'attachment; filename=".+-seed9-pack\.zip"', pack.headers["content-disposition"])
    with zipfile.ZipFile(io.BytesIO(pack.content)) as archive:
        names = archive.namelist()
        settings = json.loads(archive.read("settings.json"))
        stored = [s for s in list_sounds(server.data) if s.batch == batch]
        assert sorted(archive.read(n) for n in names if n.endswith(".flac")) == sorted(
            s.audio_path.read_bytes() for s in stored)
    assert len(names) == 4 and settings["settings"]["variations"] == 3 and settings["model"]["id"] == model.model_id
    assert server.http.get("/library/batches/20990101-000000000000-abcdef/pack.zip").status_code == 404


def test_import_a_downloaded_model_into_another_library(server, model, tmp_path):
    download = server.http.get(f"/library/models/{model.model_id}/download")
    assert download.status_code == 200
    settings = fields(model, start="average", variations="1", **{"control:brightness": "1"})
    r = server.http.post("/generate", data=settings)
    page = server.http.get(r.headers["location"]).text
    (src,) = re.findall(r'<audio controls preload="none" src="(/library/sounds/[^"]+/audio)"', page)
    there = server.http.get(src).content

    other = Server(tmp_path / "second")
    try:
        bad = other.http.post("/library/models/import",
                              files={"model_zip": ("model.zip", download.content[: len(download.content) // 2])})
        assert bad.status_code == 422 and "That zip is damaged or incomplete" in bad.text
        runs = other.data / "runs"
        assert list_models(other.data) == [] and (not runs.exists() or list(runs.iterdir()) == [])
        r = other.http.post("/library/models/import", files={"model_zip": ("model.zip", download.content)})
        assert r.status_code == 303 and r.headers["location"] == "/library?done=imported"
        library = other.http.get(r.headers["location"]).text
        assert "Model imported" in library and model.name in library
        (imported,) = list_models(other.data)
        r = other.http.post("/generate", data={**settings, "model": imported.model_id})
        page = other.http.get(r.headers["location"]).text
        (src,) = re.findall(r'<audio controls preload="none" src="(/library/sounds/[^"]+/audio)"', page)
        assert other.http.get(src).content == there  # the same request, the same sound, on another library
        again = other.http.post("/library/models/import", files={"model_zip": ("model.zip", download.content)},
                                headers=HX)
        assert again.status_code == 422 and "already in the library" in again.text
    finally:
        out = other.close()
    assert "Traceback" not in out, out


def test_uploads_are_bounded(tmp_path, model, server):
    limits = UploadLimits.from_mb(0.05, 1)
    with TestClient(create_app(server.data, upload_limits=limits)) as client:
        r = client.post("/generate", data=fields(model), files={"source_file": ("big.wav", wav_bytes(2.0))})
        assert r.status_code == 422 and error(r.text).startswith("big.wav: It is larger than the")
        r = client.post("/library/models/import", files={"model_zip": ("m.zip", b"PK" + b"0" * 200_000)})
        assert r.status_code == 422 and "larger than the" in r.text
