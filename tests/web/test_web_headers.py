"""What every response tells the browser: security headers and a CSP the pages obey, gzip
for text only, static files cached for good under content-hashed URLs.

The pages are rendered with a real tiny trained model and generated sounds, so
the Generate and Library tabs show their sliders, players and waveforms."""
from __future__ import annotations

import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
import torch
from starlette.routing import Route
from starlette.testclient import TestClient

from conftest_web import HX, free_port, first_answer, launch, stop
from generation_helpers import copy_of_trained
from sda_web.library import SoundRequest, generate_sounds, list_models, list_sounds
from sda_web.web.middleware import compression, security_headers as security
from sda_web.web import static_files
from sda_web.web.app import create_app

pytestmark = pytest.mark.timeout(120)
torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "headers-test-token-9c1d"
SECURITY_HEADERS = {"x-frame-options": "DENY", "x-content-type-options": "nosniff",
                    "referrer-policy": "same-origin", "cross-origin-opener-policy": "same-origin",
                    "cross-origin-resource-policy": "same-origin"}
GZIP = {"Accept-Encoding": "gzip"}
IDENTITY = {"Accept-Encoding": "identity"}


@pytest.fixture(scope="module")
def data(trained_demo, tmp_path_factory):
    data = copy_of_trained(trained_demo, tmp_path_factory, "web-headers")
    model_id = list_models(data)[0].model_id
    generate_sounds(data, SoundRequest(model=model_id, seed=1, variations=2, duration_s=1.0))
    return data


@pytest.fixture(scope="module")
def client(data):
    with TestClient(create_app(data)) as c:
        yield c


def directives(csp: str) -> dict[str, list[str]]:
    found = {}
    for part in csp.split(";"):
        name, *values = part.split()
        assert name not in found, f"{name} twice"
        found[name] = values
    return found


def page_urls(client, data) -> list[str]:
    model = list_models(data)[0]
    return ["/data", "/train", "/generate", f"/generate?model={model.model_id}", "/library",
            f"/library/models/{model.model_id}/delete", "/data/datasets/demo/delete", "/nowhere"]


# ---- security headers ------------------------------------------------------------

def test_the_policy_allows_only_this_server_and_nothing_inline():
    policy = directives(security.CSP)
    assert policy["default-src"] == ["'self'"]
    for name in ("script-src", "style-src", "img-src", "media-src", "connect-src", "form-action"):
        assert policy[name] == ["'self'"], name
    assert policy["frame-ancestors"] == ["'none'"] and policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert "unsafe" not in security.CSP and "*" not in security.CSP


def test_every_kind_of_response_carries_the_headers(client, data, monkeypatch):
    sound = list_sounds(data)[0]
    responses = {url: client.get(url) for url in page_urls(client, data)}
    responses.update({
        "fragment": client.get("/train/config?preset=balanced", headers=HX),
        "css": client.get("/static/css/app.css"),
        "js": client.get("/static/vendor/htmx.min.js"),
        "audio": client.get(f"/library/sounds/{sound.sound_id}/audio"),
        "waveform": client.get(f"/library/sounds/{sound.sound_id}/waveform.svg"),
        "redirect": client.get("/", follow_redirects=False),
        "post": client.post("/data/select", data={"name": "demo"}, follow_redirects=False),
        "405": client.put("/data/select"),
        "403": client.post("/data/demo", headers={"Origin": "http://evil.example"}),
    })
    assert responses["/nowhere"].status_code == 404 and responses["redirect"].status_code == 303
    assert responses["post"].status_code == 303 and responses["405"].status_code == 405
    assert responses["403"].status_code == 403
    for name, r in responses.items():
        assert r.status_code < 500, name
        for header, value in SECURITY_HEADERS.items():
            assert r.headers.get(header) == value, (name, header)
        if name != "403":  # the guard's plain page brings its own (below)
            assert r.headers["content-security-policy"] == security.CSP, name


def test_the_server_error_page_is_covered_too(data):
    app = create_app(data)

    async def boom(request):
        raise RuntimeError("a bug")

    app.router.routes.append(Route("/boom", boom))
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/boom")
    assert r.status_code == 500
    assert r.headers["content-security-policy"] == security.CSP and r.headers["x-frame-options"] == "DENY"


def test_the_plain_refusal_pages_allow_exactly_their_own_style(data):
    with TestClient(create_app(data, access_token=TOKEN)) as c:
        r = c.get("/library")
    assert r.status_code == 401 and r.headers["x-frame-options"] == "DENY"
    styles = re.findall(r"<style>(.*?)</style>", r.text, re.S)
    assert len(styles) == 1
    policy = directives(r.headers["content-security-policy"])
    digest = hashlib.sha256(styles[0].encode()).digest()
    assert policy["style-src"] == ["'self'", security.style_hash(styles[0])]
    assert security.style_hash(styles[0]).endswith(__import__("base64").b64encode(digest).decode() + "'")
    assert policy["frame-ancestors"] == ["'none'"] and policy["script-src"] == ["'self'"]
    assert "<script" not in r.text


class InlineFinder(HTMLParser):
    """Everything in a page that a CSP without 'unsafe-inline'/'unsafe-eval' would refuse."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []
        self.scripts: list[str] = []

    def handle_starttag(self, tag, attrs):
        names = dict(attrs)
        if tag == "style":
            self.found.append("<style>")
        if tag == "script":
            if "src" not in names:
                self.found.append("inline <script>")
            self.scripts.append(names.get("src") or "")
        for name, value in attrs:
            if name == "style" or name.startswith("on") or name.startswith("hx-on"):
                self.found.append(f"<{tag} {name}=...>")
            if value and value.strip().lower().startswith("javascript:"):
                self.found.append(f"<{tag} {name}=javascript:...>")
            if name in ("hx-vals", "hx-vars") and value and value.lstrip().startswith(("js:", "javascript:")):
                self.found.append(f"<{tag} {name}=js:...>")
            if name == "hx-trigger" and value and "[" in value:  # an event filter is evaluated code
                self.found.append(f"<{tag} hx-trigger filter>")


def inline_parts(html: str) -> InlineFinder:
    finder = InlineFinder()
    finder.feed(html)
    return finder


def test_no_page_fragment_or_live_frame_has_inline_code_or_style(client, data):
    htmls = {url: client.get(url).text for url in page_urls(client, data)}
    htmls.update({f"hx {url}": client.get(url, headers=HX).text for url in ("/generate", "/library")})
    htmls["config fragment"] = client.get("/train/config?preset=balanced", headers=HX).text
    with client.websocket_connect("/train/ws") as ws:
        htmls["live frame"] = ws.receive_text()
    assert 'id="loss-chart"' in htmls["live frame"] and "<polyline" in htmls["live frame"]
    assert 'class="wave"' in htmls["/library"] and "data-output=" in htmls["/generate"]
    for name, html in htmls.items():
        assert inline_parts(html).found == [], name
    # and no template holds any, including the ones these pages did not render
    for template in (ROOT / "templates").rglob("*.html"):
        assert inline_parts(template.read_text()).found == [], template.name


def test_htmx_is_configured_to_need_neither_eval_nor_inline_style(client):
    page = client.get("/data").text
    config = json.loads(re.search(r"<meta name=\"htmx-config\" content='([^']+)'>", page).group(1))
    assert config["allowEval"] is False and config["includeIndicatorStyles"] is False
    assert config["allowScriptTags"] is False
    scripts = inline_parts(page).scripts
    assert [s.split("?")[0] for s in scripts] == ["/static/vendor/htmx.min.js", "/static/vendor/ws.min.js",
                                                   "/static/js/app.js"]


# ---- compression -----------------------------------------------------------------

def test_text_is_gzipped_for_clients_that_accept_it(client, data):
    for url, headers in (("/data", {}), ("/library", {}), ("/static/css/app.css", {}),
                         ("/static/vendor/htmx.min.js", {}), ("/static/js/app.js", {}),
                         ("/train/config?preset=balanced", HX)):
        plain = client.get(url, headers={**headers, **IDENTITY})
        packed = client.get(url, headers={**headers, **GZIP})
        assert "content-encoding" not in plain.headers, url
        assert packed.headers["content-encoding"] == "gzip", url
        assert "Accept-Encoding" in packed.headers["vary"] and "Accept-Encoding" in plain.headers["vary"], url
        assert packed.content == plain.content, url  # httpx decoded it: the same bytes
        assert int(packed.headers["content-length"]) < len(plain.content) * 0.6, url
    sound = list_sounds(data)[0]
    svg = client.get(f"/library/sounds/{sound.sound_id}/waveform.svg", headers=GZIP)
    assert svg.headers["content-encoding"] == "gzip" and svg.text.startswith("<svg")


def test_audio_ranges_small_and_refused_encodings_are_left_alone(client, data):
    sound = list_sounds(data)[0]
    audio_url = f"/library/sounds/{sound.sound_id}/audio"
    audio = client.get(audio_url, headers=GZIP)
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    assert "content-encoding" not in audio.headers and audio.content[:4] == b"RIFF"
    part = client.get(audio_url, headers={**GZIP, "Range": "bytes=0-99"})
    assert part.status_code == 206 and "content-encoding" not in part.headers and len(part.content) == 100
    download = client.get(f"/library/sounds/{sound.sound_id}/download?format=flac", headers=GZIP)
    assert download.status_code == 200 and "content-encoding" not in download.headers
    tiny = client.post("/train/cancel", headers={**GZIP, **HX})  # a one-line notice
    assert len(tiny.content) < compression.MIN_COMPRESS_BYTES and "content-encoding" not in tiny.headers
    for refused in ("gzip;q=0", "br", "identity, *;q=0", "deflate"):
        r = client.get("/data", headers={"Accept-Encoding": refused})
        assert "content-encoding" not in r.headers, refused
    assert client.get("/data", headers={"Accept-Encoding": "br;q=1, *;q=0.5"}).headers["content-encoding"] == "gzip"


def test_the_websocket_is_never_compressed(client):
    with client.websocket_connect("/train/ws", headers=GZIP) as ws:
        assert ws.receive_text().lstrip().startswith("<")  # text frames as rendered, no gzip


def test_accepts_gzip_reads_qualities():
    assert compression.accepts_gzip("gzip, deflate, br") and compression.accepts_gzip("GZIP;q=0.5") and compression.accepts_gzip("*")
    for header in ("", "identity", "gzip;q=0", "gzip; q=0.0", "*;q=0", "gzip;q=x", "br, *;q=0"):
        assert not compression.accepts_gzip(header), header


# ---- caching -------------------------------------------------------------------

def test_static_urls_carry_their_content_hash_and_are_kept_for_a_year(client):
    page = client.get("/data").text
    linked = re.findall(r'(?:href|src)="(/static/[^"]+)"', page)
    assert len(linked) == 5, linked  # icon, CSS, htmx, its ws extension, app.js
    for url in linked:
        path, _, query = url.partition("?")
        file = ROOT / "static" / path.removeprefix("/static/")
        assert query == "v=" + hashlib.sha256(file.read_bytes()).hexdigest()[:12], url
        r = client.get(url)
        assert r.status_code == 200 and r.headers["cache-control"] == "public, max-age=31536000, immutable", url
        for other in (path, path + "?v=000000000000"):  # no version, or an old one: revalidate, never keep
            assert client.get(other).headers["cache-control"] == "no-cache", other
    # revalidation by ETag still works, gzipped (a weak tag: other bytes than the plain file) or not
    first = client.get("/static/css/app.css", headers=GZIP)
    assert first.headers["etag"].startswith('W/"')
    assert client.get("/static/css/app.css", headers={**GZIP, "If-None-Match": first.headers["etag"]}).status_code == 304
    plain = client.get("/static/css/app.css", headers=IDENTITY)
    assert plain.headers["etag"].startswith('"')
    assert client.get("/static/css/app.css", headers={**IDENTITY, "If-None-Match": plain.headers["etag"]}).status_code == 304


def test_an_edited_asset_gets_a_new_url(tmp_path):
    (tmp_path / "css").mkdir()
    file = tmp_path / "css" / "app.css"
    file.write_text("body { color: red }")
    versions = static_files.AssetVersions(tmp_path)
    before = versions.url_query("css/app.css")
    assert before == "?v=" + hashlib.sha256(b"body { color: red }").hexdigest()[:12]
    file.write_text("body { color: blue; }")
    assert versions.url_query("css/app.css") not in ("", before)
    assert versions.url_query("css/missing.css") == "" and versions.url_query("../../etc/passwd") == ""


# ---- the first page, measured on a real server ---------------------------------------

TABS = ("/data", "/train", "/generate", "/library")


def first_visit_bytes(base: str, tab: str, accept: str) -> tuple[int, int]:
    """(bytes on the wire, headers included; bytes decoded) of a tab and everything it links from /static."""
    with httpx.Client(base_url=base, headers={"Accept-Encoding": accept}, timeout=10) as http:
        page = http.get(tab)
        responses = [page] + [http.get(u) for u in re.findall(r'(?:href|src)="(/static/[^"]+)"', page.text)]
    for r in responses:
        assert r.status_code == 200, r.url
    head = sum(len(f"HTTP/1.1 {r.status_code} {r.reason_phrase}\r\n\r\n")
               + sum(len(k) + len(v) + 4 for k, v in r.headers.raw) for r in responses)
    return head + sum(r.num_bytes_downloaded for r in responses), sum(len(r.content) for r in responses)


def test_each_tab_weighs_under_40_kb_on_the_wire_at_first_visit(data):
    """On the data with a trained model, so Train shows a 60-epoch chart and Library its sounds."""
    port = free_port()
    proc = launch(data, port)
    try:
        first_answer(port)
        base = f"http://127.0.0.1:{port}"
        measured = {tab: (first_visit_bytes(base, tab, "identity"), first_visit_bytes(base, tab, "gzip, deflate, br"))
                    for tab in TABS}
    finally:
        out = stop(proc)
    assert "Traceback" not in out, out
    for tab, ((plain, decoded), (packed, _)) in measured.items():
        print(f"{tab}: {plain} B plain, {packed} B gzipped ({packed / plain:.2f})")
        assert decoded > 80_000, tab  # HTML + CSS + htmx + ws + app.js: the measurement saw them all
        assert packed <= 40_000, (tab, packed)
