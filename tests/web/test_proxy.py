"""nginx in front of `sda serve --root-path /sda`, as on a studio LAN: pages, static files,
a form post and live WebSocket updates all work through the sub-path."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time

import httpx
import pytest
from websockets.sync.client import connect

from conftest_web import free_port, require_real_part

pytestmark = [pytest.mark.external, pytest.mark.timeout(120)]

NGINX_CONF = """
daemon off;
worker_processes 1;
{user}
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen 127.0.0.1:{listen};
        location /sda/ {{
            proxy_pass http://127.0.0.1:{upstream}/;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
{host_headers}
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_buffering off;
            proxy_read_timeout 1h;
            client_max_body_size 2g;
        }}
    }}
}}
"""


def wait_for(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"nothing answers at {url}"
            time.sleep(0.05)


# The usual set-up: nginx tells sda the host the browser used.
FORWARD_HOST = """            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-Host $http_host;"""
# A proxy that cannot: sda sees only its own upstream address (nginx's default Host, $proxy_host).
HIDE_HOST = ""


@contextlib.contextmanager
def nginx_in_front(tmp_path, host_headers: str = FORWARD_HOST, app_args: tuple[str, ...] = ()):
    """`sda serve --root-path /sda` behind nginx at /sda/; yields (proxy base URL, the app's output so far)."""
    nginx = require_real_part(shutil.which("nginx") or "/usr/sbin/nginx", "nginx")
    upstream, listen = free_port(), free_port()
    conf_dir = tmp_path / "nginx"
    conf_dir.mkdir(parents=True)
    user = "user root;" if os.geteuid() == 0 else ""  # as root, workers would run as nobody, locked out of tmp
    (conf_dir / "nginx.conf").write_text(NGINX_CONF.format(tmp=conf_dir, listen=listen, upstream=upstream, user=user,
                                                           host_headers=host_headers))
    env = {**os.environ, "SDA_THREADS": "1", "OMP_NUM_THREADS": "1"}
    app = subprocess.Popen([sys.executable, "-m", "sda_web.cli", "serve", "--port", str(upstream),
                            "--root-path", "/sda", "--data-dir", str(tmp_path / "data"),
                            *[a.format(listen=listen) for a in app_args]],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proxy = subprocess.Popen([nginx, "-p", str(conf_dir), "-c", str(conf_dir / "nginx.conf")],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(f"http://127.0.0.1:{upstream}/sda/static/css/app.css")
        wait_for(f"http://127.0.0.1:{listen}/")
        yield f"http://127.0.0.1:{listen}"
    finally:
        proxy.terminate()
        nginx_out, _ = proxy.communicate(timeout=10)
        app.terminate()
        app_out, _ = app.communicate(timeout=20)
    assert "Traceback" not in app_out, app_out
    assert "[emerg]" not in nginx_out and "[emerg]" not in (conf_dir / "error.log").read_text()
    for origin in app_args[1::2]:
        assert f"also accepting forms and live updates from pages at {origin.format(listen=listen)}" in app_out


@pytest.fixture
def proxied(tmp_path):
    with nginx_in_front(tmp_path) as base:
        yield base


def test_pages_static_forms_and_live_updates_through_nginx(proxied):
    from websockets.exceptions import InvalidStatus

    base = proxied
    origin = {"Origin": base}  # what a browser sends with a form post or a WebSocket handshake
    with httpx.Client(base_url=base, timeout=30) as http:
        r = http.get("/sda/", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/sda/data"
        page = http.get("/sda/data").text
        urls = re.findall(r'(?:href|src|action|hx-post|hx-get|formaction)="([^"]+)"', page)
        assert urls and all(u.startswith("/sda/") for u in urls), urls
        for ref in re.findall(r'(?:href|src)="(/sda/static/[^"]+)"', page):
            r = http.get(ref)
            assert r.status_code == 200 and len(r.content) > 100, ref
        assert http.get("/sda/static/css/app.css").headers["content-type"].startswith("text/css")

        # the browser's headers and gzip pass the proxy; the static files are kept for good
        r = http.get("/sda/data", headers={"Accept-Encoding": "gzip"})
        assert r.headers["content-encoding"] == "gzip" and "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
        css = re.search(r'href="(/sda/static/css/app\.css\?v=[0-9a-f]{12})"', r.text).group(1)
        assert http.get(css).headers["cache-control"] == "public, max-age=31536000, immutable"

        # a form post: the proxy's X-Forwarded-Host makes it same-origin; another site is refused
        assert http.post("/sda/data/demo", headers={"Origin": "http://evil.example"}).status_code == 403
        r = http.post("/sda/data/demo", headers=origin, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/sda/data?job=1"
        deadline = time.monotonic() + 60
        while "every 1s" in http.get("/sda/data/imports/1", headers={"HX-Request": "true"}).text:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert 'ws-connect="/sda/train/ws"' in http.get("/sda/train").text

        # the WebSocket upgrade passes the proxy; one from another site does not
        ws_url = base.replace("http://", "ws://") + "/sda/train/ws"
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url, additional_headers={"Origin": "http://evil.example"}, open_timeout=10)
        assert refused.value.response.status_code == 403
        with connect(ws_url, additional_headers=origin, open_timeout=10) as ws:
            assert 'id="loss-chart"' in ws.recv(timeout=10)
            form = {"preset": "balanced", "epochs": "2", "learning_rate": "0.001", "dropout": "0.1",
                    "weight_decay": "0.0001", "kl_weight_max": "0.1"}
            r = http.post("/sda/train/start", data=form, headers=origin, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"] == "/sda/train"
            seen = set()
            deadline = time.monotonic() + 90
            while "finished" not in seen and time.monotonic() < deadline:
                msg = ws.recv(timeout=max(1, deadline - time.monotonic()))
                if "<polyline" in msg:
                    seen.add("chart")
                if re.search(r"Epoch \d+/2", msg):
                    seen.add("stats")
                if 'hx-swap-oob="beforeend:#previews"' in msg:
                    seen.add("preview")
                    src = re.search(r'<audio controls preload="none" src="([^"]+)"', msg).group(1)
                    assert src.startswith("/sda/train/runs/")
                    assert http.get(src).content[:4] == b"RIFF"  # the preview plays through the proxy too
                if "Training complete: 2 epochs" in msg:
                    seen.add("finished")
        assert seen == {"chart", "stats", "preview", "finished"}, seen


def test_a_proxy_that_hides_the_host_needs_allowed_origin(tmp_path):
    """nginx passes neither the browser's Host nor X-Forwarded-Host: sda sees 127.0.0.1:<upstream>.
    Refused (with advice naming --allowed-origin), then accepted once sda is told the proxy's origin."""
    from websockets.exceptions import InvalidStatus

    with nginx_in_front(tmp_path / "plain", HIDE_HOST) as base:
        r = httpx.post(base + "/sda/data/demo", headers={"Origin": base}, timeout=30)
        assert r.status_code == 403
        assert f"start sda with --allowed-origin and that address (--allowed-origin {base}, if that is" in r.text
        with pytest.raises(InvalidStatus):
            connect(base.replace("http://", "ws://") + "/sda/train/ws", additional_headers={"Origin": base},
                    open_timeout=10)

    with nginx_in_front(tmp_path / "allowed", HIDE_HOST, ("--allowed-origin", "http://127.0.0.1:{listen}")) as base:
        with httpx.Client(base_url=base, timeout=30) as http:
            r = http.post("/sda/data/demo", headers={"Origin": base}, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"] == "/sda/data?job=1"
            r = http.post("/sda/data/demo", headers={"Referer": base + "/sda/data"}, follow_redirects=False)
            assert r.status_code == 303  # an older browser's Referer counts the same
            assert http.post("/sda/data/demo", headers={"Origin": "http://evil.example"}).status_code == 403
        with connect(base.replace("http://", "ws://") + "/sda/train/ws", additional_headers={"Origin": base},
                     open_timeout=10) as ws:
            assert 'id="loss-chart"' in ws.recv(timeout=10)
