"""The front door: access token, cross-site refusals, trusted proxy headers, files by id only."""
from __future__ import annotations

import hmac
import io
import re
import socket
from contextlib import redirect_stdout

import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse

from conftest_web import ScriptedRunner, make_dataset
from sda_web.web.middleware import access as guard
from sda_web.web.app import create_app

pytestmark = pytest.mark.timeout(60)
TOKEN = "correct-horse-battery-staple"
FORM = {"preset": "balanced", "epochs": "5", "learning_rate": "0.001", "dropout": "0.1",
        "weight_decay": "0.0001", "kl_weight_max": "0.1"}


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "data"
    path.mkdir()
    make_dataset(path, "tones", count=3)
    return path


def locked(data, **kwargs):
    return TestClient(create_app(data, runner=ScriptedRunner(), access_token=TOKEN, **kwargs))


# ---- access token --------------------------------------------------------------

def test_without_the_token_every_route_is_a_plain_401(data):
    with locked(data) as c:
        for path in ("/", "/train", "/data", "/generate", "/library", "/static/css/app.css",
                     "/static/vendor/htmx.min.js", "/train/config?preset=balanced", "/nowhere",
                     "/train/runs/x/previews/epoch_0001_recon.wav", "/train?token=wrong"):
            r = c.get(path, follow_redirects=False)
            assert r.status_code == 401, path
            assert "Access token required" in r.text and 'name="token"' in r.text, path
            assert "tones" not in r.text and "<nav" not in r.text and "static/" not in r.text, path
        for path in ("/train/start", "/train/cancel", "/data/demo", "/data/select"):
            assert c.post(path, data=FORM).status_code == 401
        with pytest.raises(WebSocketDenialResponse) as denied:
            with c.websocket_connect("/train/ws"):
                pass
        assert denied.value.status_code == 401
        # a wrong cookie or bearer token is no better
        assert c.get("/train", headers={"Authorization": "Bearer nope"}).status_code == 401
        c.cookies.set(guard.cookie_name(TOKEN), "nope")
        assert c.get("/train").status_code == 401


def test_token_in_the_url_sets_a_strict_cookie_and_redirects_to_the_clean_url(data):
    with locked(data) as c:
        r = c.get(f"/train?preset=conservative&token={TOKEN}", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/train?preset=conservative"
        cookie = r.headers["set-cookie"]
        assert cookie.startswith(f"{guard.cookie_name(TOKEN)}={guard.cookie_value(TOKEN)};")
        assert TOKEN not in cookie  # a value derived from it: cookie-safe, and not the token itself
        for attribute in ("HttpOnly", "SameSite=Strict", "Path=/"):
            assert attribute in cookie
        assert "Secure" not in cookie  # plain http on the LAN: a Secure cookie would never come back
        # the client keeps the cookie: pages, static files and the socket now work
        assert 'value="conservative" selected' in c.get("/train?preset=conservative").text
        r = c.get(f"//evil.example/train?token={TOKEN}", follow_redirects=False)
        assert r.headers["location"].startswith("/") and not r.headers["location"].startswith("//")
        assert c.get("/static/css/app.css").status_code == 200
        with c.websocket_connect("/train/ws") as ws:
            assert 'id="loss-chart"' in ws.receive_text()
        assert c.post("/train/start", data=FORM, follow_redirects=False).status_code == 303


def test_bearer_token_for_scripts_and_token_on_the_socket_url(data):
    with locked(data) as c:
        assert c.get("/data", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        with c.websocket_connect(f"/train/ws?token={TOKEN}") as ws:
            assert 'id="loss-chart"' in ws.receive_text()


def test_link_opened_from_another_site_lands_through_a_same_page_refresh(data):
    """Browsers withhold SameSite=Strict cookies on a redirect chain that began on another site."""
    with locked(data) as c:
        r = c.get(f"/train?token={TOKEN}", headers={"Sec-Fetch-Site": "cross-site"}, follow_redirects=False)
        assert r.status_code == 200 and 'http-equiv="refresh" content="0;url=/train"' in r.text
        assert "SameSite=Strict" in r.headers["set-cookie"]


def test_token_under_a_prefix_and_https_cookie(data):
    app = create_app(data, root_path="/sda", runner=ScriptedRunner(), access_token=TOKEN, trusted_proxies="testclient")
    with TestClient(app, root_path="/sda") as c:
        r = c.get(f"/sda/train?token={TOKEN}", follow_redirects=False,
                  headers={"X-Forwarded-Proto": "https"})
        assert r.headers["location"] == "/sda/train"
        assert "Path=/sda;" in r.headers["set-cookie"] and "; Secure" in r.headers["set-cookie"]


def test_tokens_are_compared_in_constant_time(data, monkeypatch):
    calls, real = [], hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(guard.hmac, "compare_digest", spy)
    with locked(data) as c:
        c.get("/train?token=guess")
        c.get("/train", headers={"Authorization": "Bearer guess2"})
    assert any(a == b"guess" for a, _ in calls) and any(a == b"guess2" for a, _ in calls)


def test_no_token_needed_on_loopback_and_one_is_made_for_the_network(data, monkeypatch):
    from sda_web.web import serve as serve_mod

    monkeypatch.delenv("SDA_TOKEN", raising=False)
    assert serve_mod.resolve_token("127.0.0.1") == (None, False)
    assert serve_mod.resolve_token("::1") == (None, False)
    assert serve_mod.resolve_token("localhost", "mine-mine") == ("mine-mine", False)
    token, generated = serve_mod.resolve_token("0.0.0.0")
    assert generated and len(token) >= 32
    monkeypatch.setenv("SDA_TOKEN", "from-the-env")
    assert serve_mod.resolve_token("192.168.1.5") == ("from-the-env", False)
    monkeypatch.delenv("SDA_TOKEN")
    with pytest.raises(ValueError, match="too short"):
        serve_mod.resolve_token("0.0.0.0", "abc")

    # `sda serve --host 0.0.0.0` prints a ready-to-open URL with the token, and the app enforces it
    built = {}
    import uvicorn

    monkeypatch.setattr(uvicorn.Server, "run", lambda self: built.setdefault("app", self.config.app))
    out = io.StringIO()
    with redirect_stdout(out):
        serve_mod.serve(host="0.0.0.0", port=8765, data_dir=data)
    printed = out.getvalue()
    match = re.search(r"http://127\.0\.0\.1:8765/\?token=([\w-]+)", printed)
    assert match and "generated" in printed, printed
    with TestClient(built["app"]) as c:
        assert c.get("/train").status_code == 401
        assert c.get(f"/train?token={match.group(1)}").status_code == 200


def test_cli_wires_token_and_upload_limits(data, monkeypatch):
    from sda_web import cli
    from sda_web.web import serve as serve_mod

    seen = {}
    monkeypatch.setattr(serve_mod, "serve", lambda **kw: seen.update(kw))
    assert cli.main(["serve", "--token", "abc", "--max-upload-mb", "5", "--max-request-mb", "50",
                     "--data-dir", str(data)]) == 0
    assert seen["token"] == "abc" and seen["max_upload_mb"] == 5 and seen["max_request_mb"] == 50
    monkeypatch.undo()
    import uvicorn

    monkeypatch.setattr(uvicorn.Server, "run", lambda self: None)
    assert cli.main(["serve", "--max-upload-mb", "-1", "--data-dir", str(data)]) == 2


def test_without_a_token_only_loopback_names_are_answered(data):
    """DNS rebinding: a page whose own name now points at 127.0.0.1 must not reach a token-less server."""
    app = create_app(data, runner=ScriptedRunner(), local_only=True, trusted_proxies="testclient")
    for base in ("http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000"):
        with TestClient(app, base_url=base) as c:
            assert c.get("/train").status_code == 200, base
    with TestClient(app, base_url="http://evil.example:8000") as c:
        r = c.get("/train")
        assert r.status_code == 403 and "only answers at 127.0.0.1 or localhost" in r.text and "tones" not in r.text
        with pytest.raises(WebSocketDenialResponse):
            with c.websocket_connect("/train/ws"):
                pass
        # a trusted proxy in front vouches for the name it was reached by
        assert c.get("/train", headers={"X-Forwarded-Host": "studio.lan"}).status_code == 200


# ---- cross-site ----------------------------------------------------------------

@pytest.fixture
def open_client(data):
    with TestClient(create_app(data, runner=ScriptedRunner())) as c:
        yield c


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"},
    {"Origin": "http://testserver.evil.example"},
    {"Origin": "http://testserver:8080"},  # another app on this host
    {"Origin": "null"},
    {"Origin": "http://[::1"},
    {"Origin": "testserver"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Origin": "http://testserver", "Sec-Fetch-Site": "cross-site"},
])
def test_state_changing_requests_from_another_site_are_refused(open_client, data, headers):
    c = open_client
    for path, form in (("/train/start", FORM), ("/train/cancel", {}), ("/data/demo", {}),
                       ("/data/select", {"name": "tones"}), ("/data/datasets/tones/delete", {})):
        r = c.post(path, data=form, headers=headers, follow_redirects=False)
        assert r.status_code == 403, (path, headers)
        assert "Refused" in r.text and "so sda refused it" in r.text
    assert c.delete("/data/datasets/tones/delete", headers=headers).status_code == 403
    with pytest.raises(WebSocketDenialResponse) as denied:
        with c.websocket_connect("/train/ws", headers=headers):
            pass
    assert denied.value.status_code == 403
    assert (data / "datasets" / "tones").is_dir()
    assert c.get("/train", headers=headers).status_code == 200  # reading is harmless


def test_same_origin_and_non_browser_requests_pass(open_client):
    c = open_client
    for headers in ({}, {"Origin": "http://testserver"}, {"Origin": "http://TESTSERVER:80"},
                    {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"}):
        assert c.post("/train/cancel", headers=headers).status_code == 409  # reached the app: nothing to cancel
    with c.websocket_connect("/train/ws", headers={"Origin": "http://testserver"}) as ws:
        assert 'id="loss-chart"' in ws.receive_text()


@pytest.mark.parametrize("referer", [
    "http://evil.example/page",
    "http://testserver.evil.example/",
    "http://testserver:8080/data",  # another app on this host
    "https://evil.example/testserver/data",
    "not a url",
    "http://[::1",  # unparseable: refused, not a server error
])
def test_without_an_origin_a_foreign_referer_is_refused(open_client, data, referer):
    c = open_client
    for path, form in (("/train/cancel", {}), ("/data/demo", {}), ("/data/datasets/tones/delete", {})):
        r = c.post(path, data=form, headers={"Referer": referer}, follow_redirects=False)
        assert r.status_code == 403, (path, referer)
        assert "so sda refused it" in r.text and "--allowed-origin" in r.text
    with pytest.raises(WebSocketDenialResponse):
        with c.websocket_connect("/train/ws", headers={"Referer": referer}):
            pass
    assert (data / "datasets" / "tones").is_dir()


def test_our_own_referer_passes_and_the_origin_wins_over_it(open_client):
    c = open_client
    for headers in ({"Referer": "http://testserver/train"}, {"Referer": "http://testserver:80/data?x=1"},
                    {"Origin": "http://testserver", "Referer": "http://evil.example/"}):
        assert c.post("/train/cancel", headers=headers).status_code == 409, headers
    for headers in ({"Referer": "http://testserver/train", "Sec-Fetch-Site": "cross-site"},
                    {"Referer": "http://testserver/train", "Sec-Fetch-Site": "same-site"},
                    {"Origin": "http://evil.example", "Referer": "http://testserver/train"}):
        assert c.post("/train/cancel", headers=headers).status_code == 403, headers


def test_a_post_with_neither_origin_nor_referer_is_a_script_and_passes(open_client):
    """Documented in docs/DESIGN-NOTES.md (Web): every current browser sends Origin with a POST."""
    assert open_client.post("/train/cancel").status_code == 409
    assert open_client.post("/train/cancel", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403


def test_allowed_origins_stand_in_for_a_host_the_proxy_cannot_pass(data):
    app = create_app(data, runner=ScriptedRunner(), allowed_origins=["https://Studio.example:443/", "http://10.0.0.5:8080"])
    with TestClient(app) as c:
        for headers in ({"Origin": "https://studio.example"}, {"Origin": "http://10.0.0.5:8080"},
                        {"Referer": "https://studio.example/sda/train"},
                        {"Origin": "https://studio.example", "Sec-Fetch-Site": "cross-site"},
                        {"Origin": "http://testserver"}):  # its own host still counts
            assert c.post("/train/cancel", headers=headers).status_code == 409, headers
        with c.websocket_connect("/train/ws", headers={"Origin": "https://studio.example"}) as ws:
            assert 'id="loss-chart"' in ws.receive_text()
        for origin in ("http://studio.example", "https://studio.example:8443", "https://evil.example",
                       "http://10.0.0.5", "null"):
            r = c.post("/train/cancel", headers={"Origin": origin})
            assert r.status_code == 403, origin
        r = c.post("/train/cancel", headers={"Origin": "https://proxy.lan"})
        assert "--allowed-origin https://proxy.lan, if that is the address you typed" in r.text
        assert "X-Forwarded-Host" in r.text


@pytest.mark.parametrize("bad, says", [
    ("*", "every site on the web"),
    ("studio.example", "is not an origin"),
    ("https://studio.example/sda", "is not an origin"),
    ("ftp://studio.example", "is not an origin"),
    ("https://user@studio.example", "is not an origin"),
    ("https://studio.example:99999", "is not an origin"),
])
def test_a_malformed_allowed_origin_is_refused_with_a_sentence(data, bad, says, capsys):
    with pytest.raises(ValueError, match=says):
        create_app(data, allowed_origins=[bad])
    from sda_web import cli

    from sda_web.web import serve as serve_mod

    for main in (lambda: cli.main(["serve", "--allowed-origin", bad, "--data-dir", str(data)]),
                 lambda: serve_mod.main(["--allowed-origin", bad, "--data-dir", str(data)])):
        assert main() == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and says in err and "Traceback" not in err and err.count("\n") == 1


def test_cli_and_environment_wire_the_allowed_origins(data, monkeypatch):
    from sda_web import cli
    from sda_web.web import serve as serve_mod

    seen = {}
    monkeypatch.setattr(serve_mod, "serve", lambda **kw: seen.update(kw))
    assert cli.main(["serve", "--allowed-origin", "https://a.example", "--allowed-origin", "http://b.lan:8080",
                     "--data-dir", str(data)]) == 0
    assert seen["allowed_origins"] == ["https://a.example", "http://b.lan:8080"]
    monkeypatch.undo()
    monkeypatch.setenv("SDA_ALLOWED_ORIGINS", "https://a.example, http://B.lan:8080 ")
    assert serve_mod.resolve_allowed_origins() == {"https://a.example", "http://b.lan:8080"}
    assert serve_mod.resolve_allowed_origins(["https://c.example"]) == {"https://c.example"}  # the flag wins
    monkeypatch.setenv("SDA_ALLOWED_ORIGINS", "")
    assert serve_mod.resolve_allowed_origins() == frozenset()


def test_forwarded_host_counts_only_from_a_trusted_proxy(data):
    headers = {"Origin": "https://studio.lan", "X-Forwarded-Host": "studio.lan", "X-Forwarded-Proto": "https"}
    with TestClient(create_app(data, runner=ScriptedRunner(), trusted_proxies="testclient")) as c:
        assert c.post("/train/cancel", headers=headers).status_code == 409
        with c.websocket_connect("/train/ws", headers=headers) as ws:
            ws.receive_text()
    for trusted in (None, "10.0.0.1"):
        with TestClient(create_app(data, runner=ScriptedRunner(), trusted_proxies=trusted)) as c:
            r = c.post("/train/cancel", headers=headers)
            assert r.status_code == 403 and "X-Forwarded-Host" in r.text


# ---- files by id only --------------------------------------------------------------

SECRET = "TOP-SECRET-4f9c2b"
TRAVERSALS = ["..", "...", "../secret.txt", "..%2Fsecret.txt", "..%2F..%2Fsecret.txt", "%2e%2e", "%2e%2e%2fsecret.txt",
              "%252e%252e%252fsecret.txt", "..%5C..%5Csecret.txt", "%2Fetc%2Fpasswd", "%00", "secret.txt%00.wav",
              "epoch_0001_recon.wav%2F..%2F..%2F..%2Fsecret.txt", ".%2E%2F.%2E%2Fsecret.txt",
              "%C0%AE%C0%AE%2Fsecret.txt", "~", "%7E"]


@pytest.fixture
def planted(tmp_path, data):
    """A secret outside the data dir, and links from inside the data dir pointing at it."""
    (tmp_path / "secret.txt").write_text(SECRET)
    (tmp_path / "secret.wav").write_text(SECRET)
    previews = data / "runs" / "run-1" / "previews"
    previews.mkdir(parents=True)
    (previews / "epoch_0002_recon.wav").write_bytes(b"RIFF-real-preview")
    (previews / "epoch_0001_recon.wav").symlink_to(tmp_path / "secret.wav")
    outside_run = tmp_path / "elsewhere" / "previews"
    outside_run.mkdir(parents=True)
    (outside_run / "epoch_0001_recon.wav").write_text(SECRET)
    (data / "runs" / "linked").symlink_to(tmp_path / "elsewhere")
    (data / "secret.txt").write_text(SECRET)  # in the data dir, but not a file any route serves
    return tmp_path


def test_every_file_route_refuses_paths_out_of_the_data_dir(open_client, planted):
    """Walks the app's own routes, so a route added later is checked too."""
    from starlette.routing import Mount, Route

    c = open_client
    served = 0
    for route in c.app.routes:
        if isinstance(route, Mount):
            templates = [route.path + "/{path}"]
        elif isinstance(route, Route) and "GET" in (route.methods or ()) and route.param_convertors:
            templates = [route.path]
        else:
            continue
        for template in templates:
            for payload in TRAVERSALS:
                for name in re.findall(r"{(\w+)(?::\w+)?}", template):
                    url = re.sub(r"{%s(?::\w+)?}" % name, payload, template)
                    url = re.sub(r"{(\w+)(?::\w+)?}", "epoch_0001_recon.wav", url)
                    r = c.get(url, follow_redirects=False)
                    assert r.status_code < 500, url
                    assert SECRET not in r.text, url
                    served += 1
    assert served > 50
    # the symlinks: a preview file, and a whole run folder, pointing outside
    assert c.get("/train/runs/run-1/previews/epoch_0001_recon.wav").status_code == 404
    assert c.get("/train/runs/linked/previews/epoch_0001_recon.wav").status_code == 404
    assert c.get("/train/runs/run-1/previews/epoch_0002_recon.wav").content == b"RIFF-real-preview"


def test_raw_dot_segments_on_a_real_server(planted):
    """httpx would normalise '..' away; a raw socket sends the path as written."""
    from conftest_web import first_answer, free_port, launch

    port = free_port()
    proc = launch(planted / "data", port)
    try:
        first_answer(port)
        for path in ("/static/../../secret.txt", "/static/../pyproject.toml", "/static/css/../../../pyproject.toml",
                     "/static//etc/passwd", "/static/%2e%2e/%2e%2e/secret.txt", "/train/runs/../../secret.txt",
                     "/train/runs/run-1/previews/../../../secret.txt", "/../secret.txt", "//etc/passwd",
                     "/static/\\..\\..\\pyproject.toml"):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
                reply = b""
                while chunk := s.recv(65536):
                    reply += chunk
            status = int(reply.split(b" ", 2)[1])
            assert status in (400, 404), (path, reply[:200])
            assert SECRET.encode() not in reply and b"[project]" not in reply and b"root:" not in reply, path
    finally:
        proc.terminate()
        proc.wait(10)
