"""LiveHub: render once, fan out, coalesce for slow clients, never drop previews."""
from __future__ import annotations

import asyncio
import re
import threading

import pytest
from starlette.routing import Router

from conftest_web import complete, metrics, preview, started, step
from sda_web.web import fragments, routes_data, routes_pages, routes_train
from sda_web.web.hub import STATE, LiveHub, Outbox
from sda_web.web.templating import make_templates

pytestmark = pytest.mark.timeout(30)


def make_hub(**kw) -> LiveHub:
    router = Router(routes=[*routes_pages.routes, *routes_data.routes, *routes_train.routes])
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles
    from sda_web.web.templating import STATIC_DIR

    router.routes.append(Mount("/static", app=StaticFiles(directory=str(STATIC_DIR)), name="static"))
    return LiveHub(make_templates(router, "").env, **kw)


class FakeSocket:
    """A WebSocket whose peer we control: it can read promptly, stall, or hang up."""

    def __init__(self, stalled: bool = False):
        self.sent: list[str] = []
        self.stalled = stalled
        self.unstall = asyncio.Event()
        self.incoming: asyncio.Queue = asyncio.Queue()
        self.got_message = asyncio.Event()

    async def accept(self):
        pass

    async def receive(self):
        return await self.incoming.get()

    async def send_text(self, text):
        if self.stalled:
            await self.unstall.wait()
        self.sent.append(text)
        self.got_message.set()

    async def close(self, code=1000):
        pass

    def hang_up(self):
        self.incoming.put_nowait({"type": "websocket.disconnect", "code": 1001})


def test_outbox_coalesces_keyed_frames_and_keeps_the_rest_in_order():
    box = Outbox(limit=50, resync=lambda: "<state/>")
    for i in range(100):
        box.put("chart", f"<c{i}/>")
        box.put("stats", f"<s{i}/>")
        if i % 10 == 0:
            box.put(None, f"<p{i}/>")
    pending = box.pending()
    assert [k for k, _ in pending].count("chart") == 1 and [k for k, _ in pending].count("stats") == 1
    assert ("chart", "<c99/>") in pending and ("stats", "<s99/>") in pending
    assert [h for k, h in pending if k is None] == [f"<p{i}/>" for i in range(0, 100, 10)]
    # the latest keyed frame moves behind frames queued earlier
    assert pending[-2:] == [("chart", "<c99/>"), ("stats", "<s99/>")]


def test_outbox_overflow_becomes_one_full_state_frame():
    box = Outbox(limit=5, resync=lambda: "<everything/>")
    for i in range(6):
        box.put(None, f"<p{i}/>")
    assert box.pending() == [(STATE, "<everything/>")] and box.overflows == 1


@pytest.mark.asyncio
async def test_stalled_client_gets_latest_frames_and_every_preview():
    hub = make_hub()
    await hub.start()
    try:
        stalled = hub.add_client(None)  # never reads: nothing takes from its outbox
        token = hub.new_token()
        hub.begin(token, run_id="run-1", dataset="tones", total_epochs=12)
        batch = [(token, started(total=12))]
        for epoch in range(1, 13):
            batch += [(token, step(epoch, s)) for s in range(1, 5)]
            batch.append((token, metrics(epoch, total=12)))
            if epoch % 3 == 0:
                batch.append((token, preview(None, epoch)))
        batch.append((token, complete(epochs=12, total=12)))
        for item in batch:  # one at a time, as if each arrived separately
            hub.process([item])
        pending = stalled.outbox.pending()
        keys = [k for k, _ in pending]
        for key in ("chart", "stats", "progress", "controls"):
            assert keys.count(key) <= 1, key
        previews = [h for k, h in pending if k is None and "beforeend:#previews" in h]
        assert [f"Epoch {e}<" in h for e, h in zip((3, 6, 9, 12), previews)] == [True] * 4
        assert any("Training complete" in h for k, h in pending if k is None)
        assert len(pending) <= 10
        chart = dict((k, h) for k, h in pending if k)["chart"]
        points = re.findall(r'<polyline[^>]* points="([^"]+)"', chart)
        assert len(points) == 2 and all(len(p.split()) == 12 for p in points)  # the latest: all 12 epochs
    finally:
        await hub.stop()


@pytest.mark.asyncio
async def test_fragments_are_rendered_once_for_all_clients(monkeypatch):
    hub = make_hub()
    await hub.start()
    calls = {"chart": 0, "stats": 0}
    real_chart, real_stats = fragments.chart, fragments.stats

    def counting_chart(*a, **k):
        calls["chart"] += 1
        return real_chart(*a, **k)

    def counting_stats(*a, **k):
        calls["stats"] += 1
        return real_stats(*a, **k)

    try:
        clients = [hub.add_client(None) for _ in range(25)]
        token = hub.new_token()
        hub.begin(token, run_id="run-1", dataset="tones", total_epochs=10)
        monkeypatch.setattr(fragments, "chart", counting_chart)
        monkeypatch.setattr(fragments, "stats", counting_stats)
        hub.process([(token, metrics(1))])
        assert calls == {"chart": 1, "stats": 1}
        charts = {id(dict((k, h) for k, h in c.outbox.pending() if k)["chart"]) for c in clients}
        assert len(charts) == 1  # the very same string object went to everyone
    finally:
        await hub.stop()


@pytest.mark.asyncio
async def test_a_stalled_socket_does_not_delay_others_and_disconnects_release_everything():
    hub = make_hub(outbox_limit=16)
    await hub.start()
    fast, slow = FakeSocket(), FakeSocket(stalled=True)
    tasks = [asyncio.create_task(hub.serve(fast)), asyncio.create_task(hub.serve(slow))]
    try:
        await asyncio.wait_for(fast.got_message.wait(), 5)
        assert "loss-chart" in fast.sent[0]  # full state first
        token = hub.new_token()
        hub.begin(token, run_id="run-1", dataset="tones", total_epochs=200)
        emit = hub.callback_for(token)

        def training_thread():
            emit(started(total=200))
            for epoch in range(1, 201):
                emit(step(epoch, 1))
                emit(metrics(epoch, total=200))
                if epoch % 10 == 0:
                    emit(preview(None, epoch))
            emit(complete(epochs=200, total=200))

        thread = threading.Thread(target=training_thread)
        thread.start()
        thread.join(5)
        for _ in range(200):
            if any("Training complete" in m for m in fast.sent):
                break
            await asyncio.sleep(0.02)
        received = "".join(fast.sent)
        assert "Training complete" in received
        assert all(f'id="preview-{e}"' in received for e in range(10, 201, 10))
        slow_client = next(c for c in hub.clients if c.websocket is slow)
        assert len(slow_client.outbox) <= 16 and slow.sent == []

        slow.hang_up()
        fast.hang_up()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        assert hub.clients == set()
    finally:
        for task in tasks:
            task.cancel()
        await hub.stop()


@pytest.mark.asyncio
async def test_events_of_an_earlier_run_are_ignored():
    hub = make_hub()
    await hub.start()
    try:
        old = hub.new_token()
        hub.begin(old, run_id="run-0", dataset="tones", total_epochs=5)
        new = hub.new_token()
        hub.begin(new, run_id="run-1", dataset="tones", total_epochs=5)
        hub.process([(old, metrics(3, total=5)), (old, complete(epochs=3, total=5))])
        assert hub.view.history == [] and hub.view.running
        hub.process([(new, metrics(1, total=5))])
        assert [m.epoch for m in hub.view.history] == [1]
    finally:
        await hub.stop()


@pytest.mark.asyncio
async def test_log_scale_is_per_client():
    hub = make_hub()
    await hub.start()
    try:
        lin, log = hub.add_client(None), hub.add_client(None, log_scale=True)
        token = hub.new_token()
        hub.begin(token, run_id="run-1", dataset="tones", total_epochs=10)
        hub.process([(token, metrics(1)), (token, metrics(2)), (token, metrics(3))])
        chart_lin = dict((k, h) for k, h in lin.outbox.pending() if k)["chart"]
        chart_log = dict((k, h) for k, h in log.outbox.pending() if k)["chart"]
        assert chart_lin != chart_log
        hub._handle_message(lin, '{"chart_options": "1", "log_scale": "on", "HEADERS": {}}')
        assert lin.log_scale and dict((k, h) for k, h in lin.outbox.pending() if k)["chart"] == chart_log
    finally:
        await hub.stop()
