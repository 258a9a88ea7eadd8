"""The Generate tab over HTTP (TestClient) with a real tiny trained model:
the form, sounds made in a worker thread, one at a time, clear refusals."""
from __future__ import annotations

import re
import threading
import time
import xml.etree.ElementTree as ET

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from conftest_web import HX, make_dataset
from generation_helpers import copy_of_trained
from sda_web import library
from sda_web.generation.analysis import load_analysis
from sda_web.library import list_models, list_sounds
from sda_web.web.app import create_app
from sda_web.web.generation_slot import generation_slot

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def data(trained_demo, tmp_path_factory):
    return copy_of_trained(trained_demo, tmp_path_factory, "web-generate")


@pytest.fixture(scope="module")
def model(data):
    return list_models(data)[0]


@pytest.fixture(scope="module")
def client(data):
    with TestClient(create_app(data)) as c:
        yield c


def form(info, **changes) -> dict:
    fields = {"model": info.model_id, "seed": "7", "variations": "2", "duration_s": "1.2", "variation_amount": "1",
              "control:brightness": "1.5", "blend_a": "", "blend_b": "", "blend_amount": "0.5", "format": "wav",
              "bits": "16", "rate": "model"}
    fields.update(changes)
    return fields


def players(html: str) -> list[str]:
    return re.findall(r'<audio controls preload="none" src="([^"]+)"', html)


# ---- pages ---------------------------------------------------------------------

def test_empty_states_guide_to_data_then_train(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with TestClient(create_app(data)) as c:
        r = c.get("/generate")
        assert r.status_code == 200 and "No model to generate with" in r.text
        assert 'href="/data"' in r.text and "Go to the Data tab" in r.text
        make_dataset(data, tmp=tmp_path)
        r = c.get("/generate")
        assert r.status_code == 200 and 'href="/train"' in r.text and "Train one on your sounds first" in r.text


def test_the_form_has_a_labelled_slider_per_sound_control(client, model):
    analysis = load_analysis(model.run_dir)
    page = client.get("/generate").text
    assert f'<option value="{model.model_id}" selected>' in page
    for i, control in enumerate(analysis.controls, start=1):
        slider = re.search(rf'<input id="g-c{i}" name="control:{re.escape(control.label)}" type="range" '
                           rf'min="-3.0" max="3.0" step="0.1" value="0"', page)
        assert slider, control.label
        assert f'<label for="g-c{i}">{control.label}</label>' in page
        assert f'<output id="g-o{i}" for="g-c{i}">0</output>' in page
    for name in analysis.files:
        assert f'<option value="{name}">{name}</option>' in page  # blend choices
    for field in ("seed", "variations", "duration_s", "variation_amount", "blend_amount", "format", "bits", "rate"):
        assert f'name="{field}"' in page
    assert 'formaction="/generate/seed"' in page and ">New seed</button>" in page
    assert "brightness" in analysis.labels
    if analysis.missing_sentence():  # the core sliders it lacks, in one sentence under the rest
        assert f'<p class="hint" id="g-missing">{analysis.missing_sentence()}</p>' in page


def test_the_form_starts_at_the_length_that_suits_the_models_sounds(client, model):
    page = client.get("/generate").text
    seconds = f"{model.default_duration_s:g}"
    assert re.search(rf'<input id="g-duration" name="duration_s"[^>]* value="{re.escape(seconds)}"', page)
    assert (f"{seconds} s suits this model: its sounds are typically {model.typical_seconds:.1f} s long."
            in page)


def test_generate_via_the_form_redirects_to_players_and_files(client, data, model):
    before = len(list_sounds(data))
    r = client.post("/generate", data=form(model), follow_redirects=False)
    assert r.status_code == 303
    location = r.headers["location"]
    assert re.fullmatch(r"/generate\?batch=\d{8}-\d{12}-[0-9a-f]{6}", location)
    assert len(list_sounds(data)) == before + 2

    page = client.get(location).text
    sources = players(page)
    assert len(sources) == 2
    for src in sources:
        audio = client.get(src)
        assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
        assert audio.content[:4] == b"RIFF"
    pictures = re.findall(r'<img class="wave" src="(/library/sounds/[^"]+/waveform\.svg)"', page)
    assert len(pictures) == 2
    svg = client.get(pictures[0])
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    picture = ET.fromstring(svg.text)
    assert picture.tag.endswith("svg")
    # an <img> cannot take the page's colour: the picture carries its own gradient (no inline style needed)
    assert picture.find("{http://www.w3.org/2000/svg}path").get("fill") == "url(#wave-fill)"
    assert picture.find(".//{http://www.w3.org/2000/svg}linearGradient").get("id") == "wave-fill"
    # the result keeps its settings in the form
    assert 'id="g-seed" name="seed" type="number"' in page and 'value="7"' in page
    assert re.search(r'name="control:brightness" type="range"[^>]* value="1.5"', page)
    assert "brightness +1.5" in page and "seed 7" in page
    assert page.count('href="/library/sounds/') >= 2  # downloads


def test_same_parameters_give_the_same_bytes(client, model):
    made = []
    for _ in range(2):
        r = client.post("/generate", data=form(model, seed="11", variations="1"), follow_redirects=False)
        (src,) = players(client.get(r.headers["location"]).text)
        made.append((src, client.get(src).content))
    assert made[0][0] != made[1][0] and made[0][1] == made[1][1]


def test_htmx_gets_the_fragment_and_the_address_of_the_result(client, model):
    r = client.post("/generate", data=form(model, variations="1", seed="3"), headers=HX)
    assert r.status_code == 200 and "<html" not in r.text and 'id="generate-work"' in r.text
    assert re.fullmatch(r"/generate\?batch=[0-9a-f-]+", r.headers["hx-push-url"])
    assert len(players(r.text)) == 1


@pytest.mark.parametrize("changes, status, message", [
    ({"duration_s": "-1"}, 422, "Duration must be between 0.1 and 60 seconds"),
    ({"duration_s": "61"}, 422, "Duration must be between 0.1 and 60 seconds"),
    ({"duration_s": "soon"}, 422, "Duration must be a number of seconds"),
    ({"duration_s": "nan"}, 422, "Duration must be a number of seconds"),
    ({"variations": "9"}, 422, "Number of variations must be a whole number from 1 to 8"),
    ({"variations": "1.5"}, 422, "Number of variations must be a whole number"),
    ({"seed": "-4"}, 422, "Seed must be a whole number from 0 to 4294967295"),
    ({"seed": ""}, 422, "Seed must be a whole number"),
    ({"variation_amount": "5"}, 422, "Variation amount must be between 0 and 2"),
    ({"control:brightness": "7"}, 422, "must be between -3 and 3 standard deviations"),
    ({"control:wobble": "1"}, 422, "This model has no control called"),
    ({"blend_a": "tone.wav"}, 422, "Choose two sounds to morph between"),
    ({"blend_a": "nope.wav", "blend_b": "nope2.wav"}, 422, "is not one of the sounds this model was trained on"),
    ({"format": "mp3"}, 422, "Unknown audio format"),
    ({"bits": "8"}, 422, "Bit depth must be 16 or 24"),
    ({"rate": "22050"}, 422, "Sample rate must be the model"),
    ({"model": "nope"}, 404, "There is no model called"),
])
def test_bad_values_are_refused_inline_with_one_sentence(client, data, model, changes, status, message):
    before = len(list_sounds(data))
    for headers in ({}, HX):
        r = client.post("/generate", data=form(model, **changes), headers=headers, follow_redirects=False)
        assert r.status_code == status, r.text[:300]
        notice = re.search(r'<p class="notice error" id="g-error" role="alert">([^<]*)</p>', r.text)
        assert notice and message in notice.group(1), (message, notice)
        assert ("<html" in r.text) == (not headers)
    assert len(list_sounds(data)) == before


def test_bad_query_parameters_never_500(client):
    for query, status in [("model=../../etc", 422), ("model=" + "x" * 500, 422), ("batch=xyz", 422),
                          ("batch=../sounds", 422), ("model=ghost-model", 200),
                          ("batch=20200101-000000000000-abcdef", 200)]:
        r = client.get(f"/generate?{query}")
        assert r.status_code == status, (query, r.status_code)
    assert "no longer in the library" in client.get("/generate?model=ghost-model").text
    assert "they were deleted" in client.get("/generate?batch=20200101-000000000000-abcdef").text


def test_new_seed_works_without_javascript_and_with_htmx(client, model):
    fields = form(model, seed="5", duration_s="3.5", **{"control:brightness": "-1"})
    r = client.post("/generate/seed", data=fields)
    assert r.status_code == 200 and "<html" in r.text
    seed = re.search(r'id="g-seed" name="seed"[^>]*value="(\d+)"', r.text).group(1)
    assert 'value="3.5"' in r.text and re.search(r'name="control:brightness" type="range"[^>]* value="-1"', r.text)
    seeds = {seed}
    for _ in range(3):
        r = client.post("/generate/seed", data=fields, headers=HX)
        assert r.status_code == 200 and r.text.lstrip().startswith('<div id="seed-field"')
        seeds.add(re.search(r'value="(\d+)"', r.text).group(1))
    assert len(seeds) > 1


def test_a_second_generation_is_refused_while_one_runs_and_the_server_stays_responsive(client, model, monkeypatch):
    release, entered = threading.Event(), threading.Event()
    real = library.generate_sounds

    def slow(*args, **kwargs):
        entered.set()
        assert release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(library, "generate_sounds", slow)
    first = {}
    worker = threading.Thread(target=lambda: first.update(
        r=client.post("/generate", data=form(model, variations="1"), follow_redirects=False)))
    worker.start()
    try:
        assert entered.wait(10)
        assert generation_slot(client.app).busy
        started = time.monotonic()
        assert client.get("/generate").status_code == 200
        assert client.get("/library").status_code == 200
        assert time.monotonic() - started < 2.0  # answered while the generation waits
        second = client.post("/generate", data=form(model, variations="1", seed="8"), follow_redirects=False)
        assert second.status_code == 409
        assert "Another generation is running right now" in second.text and "then try again" in second.text
        htmx = client.post("/generate", data=form(model), headers=HX)
        assert htmx.status_code == 409 and 'id="generate-work"' in htmx.text
    finally:
        release.set()
        worker.join(30)
    assert first["r"].status_code == 303
    assert not generation_slot(client.app).busy
    assert client.post("/generate", data=form(model, variations="1"), follow_redirects=False).status_code == 303


@settings(database=None, max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(fields=st.dictionaries(
    st.sampled_from(["model", "seed", "variations", "duration_s", "variation_amount", "control:brightness",
                     "control:x", "blend_a", "blend_b", "blend_amount", "format", "bits", "rate"]),
    st.one_of(st.text(max_size=20), st.sampled_from(["", "0", "-1", "1e309", "nan", "inf", "9" * 400, "wav", "24",
                                                    "48000", "latest", "../..", "\x00"])), max_size=10),
    htmx=st.booleans())
def test_random_forms_never_500(client, fields, htmx):
    with pytest.MonkeyPatch.context() as mp:  # a random form that happens to be valid does not make sound here
        made = type("Sound", (), {"batch": "20200101-000000000000-abcdef"})
        mp.setattr(library, "generate_sounds", lambda *a, **k: [made])
        r = client.post("/generate", data=fields, headers=HX if htmx else {}, follow_redirects=False)
    assert r.status_code < 500, (fields, r.text[:300])


def test_every_url_respects_the_root_path(data, model):
    with TestClient(create_app(data, root_path="/sda")) as c:
        r = c.post("/sda/generate", data=form(model, variations="1"), follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/sda/generate?batch=")
        page = c.get(r.headers["location"]).text
        links = re.findall(r'(?:href|src|action|formaction|hx-get|hx-post)="(/[^"]*)"', page)
        links += re.findall(r"url\('(/[^']*)'\)", page)
        assert links and all(link.startswith("/sda/") for link in links), links
        (src,) = players(page)
        assert c.get(src).status_code == 200
