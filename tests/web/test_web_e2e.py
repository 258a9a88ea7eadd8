"""End to end on a real uvicorn server: start-up time, and a short real training
run started through the HTTP form and watched through a real WebSocket client."""
from __future__ import annotations

import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import httpx
import pytest
from websockets.sync.client import connect

from conftest_web import first_answer, free_port, launch, make_dataset, stop

STARTUP_BOUND_S = 3.0  # the target is 1.5 s; this machine is shared and noisy


@pytest.mark.timeout(60)
def test_serve_answers_its_first_request_quickly(tmp_path):
    port = free_port()
    t0 = time.monotonic()
    proc = launch(tmp_path / "data", port)
    try:
        first_answer(port)
        elapsed = time.monotonic() - t0
    finally:
        out = stop(proc)
    print(f"\nfirst request answered {elapsed:.2f} s after launch")
    assert f"http://127.0.0.1:{port}/" in out
    assert elapsed < STARTUP_BOUND_S, f"first answer after {elapsed:.2f} s"


@pytest.mark.trains
@pytest.mark.timeout(180)
def test_a_real_run_pushed_live_to_a_real_websocket_client(tmp_path):
    data = tmp_path / "data"
    make_dataset(data, "tiny", count=3, tmp=tmp_path)
    port = free_port()
    proc = launch(data, port, "--root-path", "/sda")
    base = f"http://127.0.0.1:{port}"
    try:
        first_answer(port, "/sda/train")
        # a proxy that strips the prefix and one that forwards it both work
        for path in ("/train", "/sda/train"):
            r = httpx.get(base + path, timeout=10)
            assert r.status_code == 200 and 'ws-connect="/sda/train/ws"' in r.text
        with connect(f"ws://127.0.0.1:{port}/sda/train/ws", open_timeout=10) as ws:
            state = ws.recv(timeout=10)
            assert 'id="loss-chart"' in state and 'id="previews"' in state
            form = {"preset": "balanced", "epochs": "2", "learning_rate": "0.001", "dropout": "0.1",
                    "weight_decay": "0.0001", "kl_weight_max": "0.1"}
            r = httpx.post(f"{base}/sda/train/start", data=form, timeout=30)
            assert r.status_code == 303 and r.headers["location"] == "/sda/train"

            seen = {"chart": None, "stats": None, "preview": None, "finished": None}
            deadline = time.monotonic() + 150
            while seen["finished"] is None and time.monotonic() < deadline:
                msg = ws.recv(timeout=max(1, deadline - time.monotonic()))
                if "<polyline" in msg:
                    seen["chart"] = msg
                if re.search(r"Epoch \d+/2", msg):
                    seen["stats"] = msg
                if "beforeend:#previews" in msg:
                    seen["preview"] = msg
                if 'class="banner ok"' in msg or 'class="banner bad"' in msg:
                    seen["finished"] = msg
        assert all(seen.values()), {k: bool(v) for k, v in seen.items()}
        assert "Training complete: 2 epochs" in seen["finished"], seen["finished"]
        assert "Epoch 2/2" in seen["stats"] or "Epoch 2/2" in seen["finished"]
        svg = re.search(r"<svg.*?</svg>", seen["chart"], re.S).group(0)
        ET.fromstring(svg)  # well-formed XML
        src = re.search(r'<audio controls preload="none" src="([^"]+)"', seen["preview"]).group(1)
        assert src.startswith("/sda/train/runs/")
        wav = httpx.get(f"{base}{src}", timeout=10)
        assert wav.status_code == 200 and wav.content[:4] == b"RIFF"
        page = httpx.get(f"{base}/sda/train", timeout=10).text
        assert "Training complete" in page and 'name="run_id"' in page  # Resume is offered
    except BaseException:
        print("---- server output ----\n" + stop(proc))
        raise
    out = stop(proc)
    assert "Traceback" not in out, out


@pytest.mark.timeout(60)
def test_the_web_path_does_not_import_torch():
    code = ("import sys, sda_web.web.app, sda_web.web.serve; "
            "heavy = [m for m in ('torch', 'torchaudio', 'sda_web.audio.features', 'sda_web.model') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stdout + done.stderr
