"""Live push: event -> browser latency, and what 50 watchers cost the training.

    .venv/bin/python bench/live_push.py [--clients 50] [--events 120] [--epochs 12]

A real uvicorn server runs in a subprocess (this file with --server); the
clients are real `websockets` clients in this process.

1. Latency. The server gets a synthetic run whose "training thread" emits
   StepProgress at ~20/s and one EpochMetrics every 100 ms through the same
   callback the TrainingRunner uses (hub.callback_for -> call_soon_threadsafe).
   Each EpochMetrics' emit time (CLOCK_MONOTONIC, shared by all processes on
   Linux) is recorded server-side; each client records when the stats
   fragment for that epoch arrives. p50/p99 with 1 and with N clients.
2. Throughput. A real short training run, started through the HTTP form,
   with N clients watching vs none; steps/s from the runner's own epoch
   timings. Runs alternate (none, N, none, N) and the better of each pair
   counts, to damp this shared machine's noise.
Targets: p99 < 50 ms with 50 clients; throughput ratio >= 0.95.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))  # also when loaded as a module (tests/web/test_web_load.py)

from _bench_common import count_steps_per_epoch, make_dataset  # noqa: E402
EPOCH_RE = re.compile(r'id="train-stats".*?Epoch (\d+)/', re.S)


# ---- server side -----------------------------------------------------------------

def run_server(port: int, data_dir: str) -> None:
    import uvicorn
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from sda_web.training.events import EpochMetrics, StepProgress, TrainingCompleteEvent
    from sda_web.web.app import create_app
    from sda_web.web.serve import PER_MESSAGE_DEFLATE

    app = create_app(data_dir)
    emitted: dict[int, float] = {}

    async def emit(request):
        n, interval = int(request.query_params["n"]), float(request.query_params["interval"])
        hub = app.state.hub
        token = hub.new_token()
        hub.begin(token, run_id="bench", dataset="bench", total_epochs=n)
        callback = hub.callback_for(token)
        emitted.clear()

        def training_thread():
            for epoch in range(1, n + 1):
                for step in range(1, 3):
                    time.sleep(interval / 2)
                    callback(StepProgress(epoch, step, 2))
                loss = 1.0 / epoch
                emitted[epoch] = time.monotonic()
                callback(EpochMetrics(epoch, n, loss, loss * 1.1, loss, 0.01, loss, 0.01, 1e-3, epoch * interval,
                                      (n - epoch) * interval))
            callback(TrainingCompleteEvent("completed", n, n, 0.1, None))

        threading.Thread(target=training_thread, daemon=True).start()
        return JSONResponse({"ok": True})

    async def emitted_times(request):
        return JSONResponse(emitted)

    async def timings(request):
        runner = next(iter(app.state.queue_runner.runners), None)
        return JSONResponse({"running": bool(runner and runner.is_running), "steps_per_epoch": steps_seen[0],
                             "epochs": runner.epoch_timings if runner else []})

    steps_seen = count_steps_per_epoch(app.state.hub)

    app.router.routes += [Route("/bench/emit", emit, methods=["POST"]), Route("/bench/emitted", emitted_times),
                          Route("/bench/timings", timings)]
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio",
                ws_per_message_deflate=PER_MESSAGE_DEFLATE)


# ---- client side -----------------------------------------------------------------

class Watcher:
    """One browser: records when each epoch's stats fragment arrives."""

    def __init__(self):
        self.arrived: dict[int, float] = {}
        self.messages = 0
        self.bytes = 0

    async def watch(self, url: str, ready: asyncio.Event, stop: asyncio.Event, connected: list) -> None:
        from websockets.asyncio.client import connect

        async with connect(url, max_size=None) as ws:
            await ws.recv()  # full state
            connected.append(self)
            if len(connected) >= connected_target[0]:
                ready.set()
            while not stop.is_set():
                try:
                    msg = await asyncio.wait_for(ws.recv(), 0.5)
                except asyncio.TimeoutError:
                    continue
                now = time.monotonic()
                self.messages += 1
                self.bytes += len(msg)
                match = EPOCH_RE.search(msg)
                if match:
                    self.arrived.setdefault(int(match.group(1)), now)


connected_target = [0]


async def with_watchers(base: str, n: int, body):
    """Run `body()` while `n` clients watch the Train tab's socket."""
    ready, stop, connected = asyncio.Event(), asyncio.Event(), []
    connected_target[0] = n
    watchers = [Watcher() for _ in range(n)]
    url = base.replace("http://", "ws://") + "/train/ws"
    tasks = [asyncio.create_task(w.watch(url, ready, stop, connected)) for w in watchers]
    if n:
        await asyncio.wait_for(ready.wait(), 30)
    try:
        result = await body()
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    return result, watchers


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


async def latency(base: str, clients: int, events: int, interval: float) -> dict:
    import httpx

    async def body():
        async with httpx.AsyncClient() as http:
            await http.post(f"{base}/bench/emit", params={"n": events, "interval": interval})
            await asyncio.sleep(events * interval + 1.0)
            return (await http.get(f"{base}/bench/emitted")).json()

    emitted, watchers = await with_watchers(base, clients, body)
    emitted = {int(k): v for k, v in emitted.items()}
    lat = [(w.arrived[e] - emitted[e]) * 1000 for w in watchers for e in w.arrived if e in emitted]
    expected = clients * len(emitted)
    return {"p50": statistics.median(lat), "p99": pct(lat, 99), "max": max(lat), "delivered": len(lat) / expected,
            "bytes_per_client": sum(w.bytes for w in watchers) / clients}


async def throughput(base: str, clients: int, epochs: int) -> float:
    import httpx

    form = {"preset": "balanced", "epochs": str(epochs), "learning_rate": "0.001", "dropout": "0.1",
            "weight_decay": "0.0001", "kl_weight_max": "0.1"}

    async def body():
        async with httpx.AsyncClient(timeout=60) as http:
            r = await http.post(f"{base}/train/start", data=form)
            assert r.status_code == 303, r.text[:300]
            while True:
                await asyncio.sleep(0.5)
                t = (await http.get(f"{base}/bench/timings")).json()
                if not t["running"] and len(t["epochs"]) == epochs:
                    return t

    t, _ = await with_watchers(base, clients, body)
    return t["steps_per_epoch"] * len(t["epochs"]) / sum(e["wall_s"] for e in t["epochs"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--events", type=int, default=120)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between epoch events")
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args()
    if args.server:
        run_server(args.port, args.data_dir)
        return

    import socket

    import httpx

    tmp = Path(tempfile.mkdtemp(prefix="sda-bench-"))
    data_dir = tmp / "data"
    make_dataset(data_dir)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "SDA_THREADS": os.environ.get("SDA_THREADS", "1")}
    server = subprocess.Popen([sys.executable, __file__, "--server", "--port", str(port), "--data-dir", str(data_dir)],
                              env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(base + "/data", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)

        async def run_all():
            lat = {n: await latency(base, n, args.events, args.interval) for n in (1, args.clients)}
            await throughput(base, 0, 2)  # warm-up: pays torch's import before anything is timed
            tput = {0: [], args.clients: []}
            for n in (0, args.clients, 0, args.clients):
                tput[n].append(await throughput(base, n, args.epochs))
            return lat, tput

        lat, tput = asyncio.run(run_all())
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()

    one, many = lat[1], lat[args.clients]
    print(f"\nlive push: {args.events} epoch events every {args.interval * 1000:.0f} ms (+ step events), "
          f"real uvicorn server, real websocket clients")
    print(f"{'':28}{'1 client':>12}{f'{args.clients} clients':>14}{'ratio':>9}")
    for key, label in (("p50", "latency p50 (ms)"), ("p99", "latency p99 (ms)"), ("max", "latency max (ms)")):
        print(f"{label:28}{one[key]:12.1f}{many[key]:14.1f}{many[key] / one[key]:9.2f}")
    print(f"{'fragments delivered':28}{one['delivered']:12.0%}{many['delivered']:14.0%}")
    print(f"{'bytes per client':28}{one['bytes_per_client']:12.0f}{many['bytes_per_client']:14.0f}")
    best0, bestn = max(tput[0]), max(tput[args.clients])
    print(f"\ntraining throughput, {args.epochs}-epoch real run (better of 2 runs each)")
    print(f"{'':28}{'no clients':>12}{f'{args.clients} clients':>14}{'ratio':>9}")
    print(f"{'steps/s':28}{best0:12.3f}{bestn:14.3f}{bestn / best0:9.3f}")
    print(f"{'  all runs':28}{' '.join(f'{v:.3f}' for v in tput[0]):>12}{' '.join(f'{v:.3f}' for v in tput[args.clients]):>14}")
    print(f"\ntargets: p99 < 50 ms with {args.clients} clients -> {'met' if many['p99'] < 50 else 'NOT met'}; "
          f"throughput ratio >= 0.95 -> {'met' if bestn / best0 >= 0.95 else 'NOT met'}")


if __name__ == "__main__":
    main()
