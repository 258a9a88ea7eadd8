"""The Train tab's WebSocket through the app: state on connect, a fragment per event, completion."""
from __future__ import annotations

import json
import re
import time
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest
from starlette.testclient import TestClient

from conftest_web import ScriptedRunner, complete, make_dataset, metrics, preview, started, step
from sda_web.web.app import create_app

pytestmark = pytest.mark.timeout(60)
FORM = {"preset": "balanced", "epochs": "6", "learning_rate": "0.001", "dropout": "0.1",
        "weight_decay": "0.0001", "kl_weight_max": "0.1"}


VOID = {"input", "br", "img", "meta", "link", "source", "hr"}


class _TopLevel(HTMLParser):
    def __init__(self):
        super().__init__()
        self.depth, self.found = 0, []

    def handle_starttag(self, tag, attrs):
        if self.depth == 0:
            attrs = dict(attrs)
            self.found.append(attrs.get("id") or attrs.get("hx-swap-oob"))
        if tag not in VOID:
            self.depth += 1

    def handle_endtag(self, tag):
        if tag not in VOID:
            self.depth -= 1


def receive(ws) -> str:
    """The next run frame; the queue panel's own updates (a run claimed, a run ended) come between."""
    while True:
        message = ws.receive_text()
        if ids(message) != ["train-queue"]:
            return message


def ids(message: str) -> list[str]:
    """ids of the top-level elements of a message (what htmx swaps)."""
    parser = _TopLevel()
    parser.feed(message)
    assert parser.depth == 0, "unbalanced fragment"
    return parser.found


@pytest.fixture
def setup(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    make_dataset(data, "tones")
    runner = ScriptedRunner()
    with TestClient(create_app(data, runner=runner)) as client:
        yield client, runner, data


def test_connect_gets_the_full_state_first(setup):
    client, runner, _ = setup
    with client.websocket_connect("/train/ws") as ws:
        state = ws.receive_text()
    assert ids(state) == ["chart-options", "loss-chart", "train-stats", "epoch-progress", "train-controls",
                          "train-outcome", "previews", "train-queue"]


def test_each_event_pushes_its_fragments_and_the_end_flips_the_controls(setup):
    client, runner, data = setup
    with client.websocket_connect("/train/ws") as ws:
        ws.receive_text()
        assert client.post("/train/start", data=FORM, follow_redirects=False).status_code == 303
        begun = receive(ws)
        assert "train-controls" in ids(begun) and re.search(r'form="train-form">Add to queue<', begun)

        runner.emit(started(total=6, dataset="tones"))
        msg = receive(ws)
        assert {"train-stats", "train-controls"} <= set(ids(msg))

        runner.emit(step(1, 2))
        msg = receive(ws)
        assert ids(msg) == ["epoch-progress"] and 'value="2"' in msg

        runner.emit(metrics(1, total=6))
        msg = receive(ws)
        assert ids(msg) == ["loss-chart", "train-stats"]
        assert "Epoch 1/6" in msg and "LR 0.001" in msg and "ETA" in msg
        svg = ET.fromstring(re.search(r"<svg.*</svg>", msg, re.S).group(0))
        assert svg.tag.endswith("svg")

        runner.emit(preview(data / "runs" / "run-1", 1))
        msg = receive(ws)
        assert ids(msg) == ["beforeend:#previews"]
        assert 'src="/train/runs/run-1/previews/epoch_0001_recon.wav"' in msg and "Epoch 1</figcaption>" in msg
        assert 'preload="none"' in msg

        runner.emit(complete(outcome="failed", epochs=1, total=6, error="The loss became NaN; lower the learning rate."))
        msg = receive(ws)
        assert ids(msg)[:4] == ["train-outcome", "train-controls", "train-stats", "epoch-progress"]
        assert "Training failed at epoch 1: The loss became NaN; lower the learning rate." in msg
        assert re.search(r'form="train-form">Train<', msg)
        assert re.search(r"<button[^>]*disabled>Cancel", msg)

    # a late joiner sees the same end state, with every preview so far
    with client.websocket_connect("/train/ws") as ws:
        state = ws.receive_text()
    assert "Training failed" in state and state.count("<audio") == 1 and "Epoch 1/6" in state


def test_log_scale_toggle_over_the_socket(setup):
    client, runner, _ = setup
    client.post("/train/start", data=FORM)
    runner.emit(metrics(1, total=6, loss=2.0), metrics(2, total=6, loss=0.02))
    with client.websocket_connect("/train/ws") as ws:
        linear = ws.receive_text()
        ws.send_text(json.dumps({"chart_options": "1", "log_scale": "on", "HEADERS": {"HX-Request": "true"}}))
        log = ws.receive_text()
        assert ids(log) == ["loss-chart"] and log not in linear
    with client.websocket_connect("/train/ws?log_scale=on") as ws:
        assert 'name="log_scale" value="on" checked' in ws.receive_text()


def test_disconnects_are_released(setup):
    client, runner, _ = setup
    hub = client.app.state.hub
    for _ in range(3):
        with client.websocket_connect("/train/ws") as ws:
            ws.receive_text()
            assert len(hub.clients) == 1
    deadline = time.monotonic() + 5
    while hub.clients and time.monotonic() < deadline:
        time.sleep(0.01)
    assert hub.clients == set()
