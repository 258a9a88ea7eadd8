"""Live load: 200 browsers coming and going during a real training run.

    .venv/bin/python bench/live_load.py [--clients 200] [--silent 20] [--epochs 10] [--compare | --in-process]

Training runs in a child process of the server (the default design);
--in-process trains on a thread of the server instead (the earlier design),
and --compare measures both, one after the other, and prints them side by side.

A real uvicorn server runs in a subprocess (this file with --server); the
clients are real `websockets` clients (and raw sockets) in this process, all
on 127.0.0.1. During a real training run started through the HTTP form:

* most clients ("well-behaved") connect, read for a random while, leave
  (cleanly, or by dropping the TCP connection) and come back, at random,
  until the run is near its end; then each connects a last time and reads
  until the run has finished and the page has gone quiet;
* `--silent` clients connect and never read a byte (their socket buffers
  fill up; the server must not care);

and it prints, side by side:

1. training throughput (steps/s, from the runner's own epoch timings) with
   the clients vs with no viewers: runs alternate none, N, none, N, ...; each
   pair gives a ratio and the median of the pairs counts (target >= 0.9).
   On this shared machine one quiet run can be 20% faster than the next, so
   the better run of each kind ("best vs best") is printed too but swings;
2. whether every well-behaved client ended with the same final fragments
   (chart, stats, controls, outcome, progress, previews) as a fresh
   connection made after the run;
3. the server's RSS, hub client count and asyncio task count before, during
   and after (after gc + malloc_trim, both times): no leaked outboxes or
   tasks means clients and tasks return to the baseline, RSS close to it.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))  # also when loaded as a module (tests/web/test_web_load.py)

from _bench_common import count_steps_per_epoch, make_dataset  # noqa: E402

FORM = {"preset": "balanced", "learning_rate": "0.001", "dropout": "0.1", "weight_decay": "0.0001",
        "kl_weight_max": "0.1"}
FINISHED = re.compile(r'class="banner (ok|warn|bad)"')
QUIET_S = 2.0  # the page is "settled" when nothing has arrived for this long after the finish
STAY_S = (0.5, 8.0)  # a well-behaved client stays this long (uniform), then leaves...
AWAY_S = (0.1, 2.0)  # ...and comes back after this long: ~40 connects/s for 180 clients


# ---- server side -----------------------------------------------------------------

def run_server(port: int, data_dir: str, in_process: bool = False) -> None:
    import asyncio as aio
    import ctypes
    import gc

    import uvicorn
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from sda_web.web.app import create_app
    from sda_web.web.serve import PER_MESSAGE_DEFLATE

    if in_process:  # the old design, for comparison: training on a thread of the server process
        from sda_web.generation.after_training import analyse_trained_run
        from sda_web.training import TrainingRunner

        app = create_app(data_dir, runner=TrainingRunner(data_dir, after_training=analyse_trained_run, in_process=True))
    else:
        app = create_app(data_dir)
    hub = app.state.hub
    steps_seen = count_steps_per_epoch(hub)

    def rss_kb() -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    def thread_cpu() -> dict:
        """CPU seconds so far of the event loop's thread, the training thread(s) and the rest."""
        import threading

        tick = os.sysconf("SC_CLK_TCK")
        names = {t.native_id: t.name for t in threading.enumerate()}
        main_id = threading.main_thread().native_id
        out = {"loop": 0.0, "train": 0.0, "other": 0.0}
        for task in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            cpu = (int(fields[11]) + int(fields[12])) / tick
            tid = int(task)
            key = "loop" if tid == main_id else "train" if names.get(tid, "").startswith("train-") else "other"
            out[key] += cpu
        return out

    async def stats(request):
        if request.query_params.get("gc"):
            gc.collect()
            try:
                ctypes.CDLL("libc.so.6").malloc_trim(0)  # give freed memory back: RSS then shows what is live
            except OSError:
                pass
        runner = next(iter(app.state.queue_runner.runners), None)
        return JSONResponse({
            "rss_kb": rss_kb(), "clients": len(hub.clients), "cpu": thread_cpu(), "proc_cpu": sum(os.times()[:2]), "tasks": len(aio.all_tasks()),
            "pending_frames": sum(len(c.outbox) for c in hub.clients),
            "running": bool(runner and runner.is_running) or hub.view.running,
            "epochs_done": hub.view.epochs_done, "total_epochs": hub.view.total_epochs,
            "steps_per_epoch": steps_seen[0], "epochs": runner.epoch_timings if runner else [],
        })

    app.router.routes.append(Route("/bench/stats", stats))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio",
                ws_per_message_deflate=PER_MESSAGE_DEFLATE)


# ---- what a browser would show ------------------------------------------------------

class _Fragments(HTMLParser):
    """Top-level elements of a pushed message, as htmx's ws extension swaps them."""

    VOID = {"input", "br", "img", "meta", "link", "source", "hr"}

    def __init__(self, text: str):
        super().__init__(convert_charrefs=False)
        self.text, self.depth, self.starts, self.found = text, 0, [], []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        if self.depth == 0:
            attrs = dict(attrs)
            self.starts.append((attrs.get("id"), attrs.get("hx-swap-oob"), self._offset()))
        if tag not in self.VOID:
            self.depth += 1

    def handle_endtag(self, tag):
        if tag not in self.VOID:
            self.depth -= 1
            if self.depth == 0:
                key, oob, start = self.starts.pop()
                end = self.text.index(">", self._offset()) + 1
                self.found.append((key, oob, self.text[start:end]))

    def _offset(self) -> int:
        line, col = self.getpos()
        return sum(len(x) for x in self.text.splitlines(keepends=True)[: line - 1]) + col


class Page:
    """The live part of the Train tab in one client: element id -> its HTML, plus the previews."""

    def __init__(self):
        self.elements: dict[str, str] = {}
        self.previews: list[str] = []
        self.finished = False

    def apply(self, message: str) -> None:
        for key, oob, html in _Fragments(message).found:
            if oob and oob.startswith("beforeend:#previews"):
                self.previews += re.findall(r'id="(preview-\d+)"', html)
            elif key:
                self.elements[key] = html
                if key == "previews":
                    self.previews = re.findall(r'id="(preview-\d+)"', html)
        if FINISHED.search(self.elements.get("train-outcome", "")):
            self.finished = True

    def final(self) -> dict:
        shown = {k: v for k, v in self.elements.items() if k != "previews"}
        return {**shown, "previews": tuple(sorted(set(self.previews)))}


# ---- clients ---------------------------------------------------------------------

class Tally:
    def __init__(self):
        self.connects = 0
        self.abrupt = 0
        self.messages = 0
        self.errors: list[str] = []


async def well_behaved(url: str, seed: int, churn: asyncio.Event, tally: Tally, deadline: float) -> dict | None:
    """Come and go until `churn` is cleared, then watch the end of the run to its final state."""
    from websockets.asyncio.client import connect

    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    await asyncio.sleep(rng.uniform(0, 2))
    for _ in range(50):  # bounded: a client comes back at most 50 times
        if not churn.is_set() or loop.time() > deadline:
            break
        try:
            async with connect(url, max_size=None, open_timeout=30, close_timeout=2) as ws:
                tally.connects += 1
                leave_at = loop.time() + rng.uniform(*STAY_S)
                while churn.is_set() and loop.time() < leave_at:
                    try:
                        await asyncio.wait_for(ws.recv(), 0.5)
                        tally.messages += 1
                    except asyncio.TimeoutError:
                        continue
                if rng.random() < 0.3:  # drop the connection without a goodbye
                    ws.transport.abort()
                    tally.abrupt += 1
        except Exception as exc:  # noqa: BLE001 - counted, reported
            tally.errors.append(f"{type(exc).__name__}: {exc}")
        await asyncio.sleep(rng.uniform(*AWAY_S))
    return await watch_to_the_end(url, tally, deadline)


async def watch_to_the_end(url: str, tally: Tally, deadline: float) -> dict | None:
    from websockets.asyncio.client import connect

    loop = asyncio.get_running_loop()
    page = Page()
    try:
        async with connect(url, max_size=None, open_timeout=30, close_timeout=2) as ws:
            tally.connects += 1
            last = loop.time()
            while loop.time() < deadline:
                try:
                    page.apply(await asyncio.wait_for(ws.recv(), 0.25))
                    tally.messages += 1
                    last = loop.time()
                except asyncio.TimeoutError:
                    if page.finished and loop.time() - last > QUIET_S:
                        break
    except Exception as exc:  # noqa: BLE001
        tally.errors.append(f"final: {type(exc).__name__}: {exc}")
        return None
    return page.final() if page.finished else None


def silent_client(port: int, path: str = "/train/ws") -> socket.socket:
    """A WebSocket that completes its handshake and then never reads again."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills fast: the server's sends back up at once
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{port}\r\n\r\n")
              .encode())
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = s.recv(1)  # byte by byte: leave the first frame unread
        if not chunk:
            raise ConnectionError("the server closed the silent client's handshake")
        reply += chunk
    if b" 101 " not in reply.split(b"\r\n", 1)[0]:
        raise ConnectionError(reply.decode(errors="replace"))
    return s


async def fresh_state(url: str) -> dict:
    from websockets.asyncio.client import connect

    async with connect(url, max_size=None) as ws:
        page = Page()
        page.apply(await ws.recv())
        return page.final()


# ---- runs ----------------------------------------------------------------------------

async def stats(http, base: str, gc: bool = False) -> dict:
    return (await http.get(f"{base}/bench/stats", params={"gc": "1"} if gc else None)).json()


async def train(http, base: str, epochs: int) -> None:
    r = await http.post(f"{base}/train/start", data={**FORM, "epochs": str(epochs)})
    assert r.status_code == 303, r.text[:300]


async def wait_idle(http, base: str, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = await stats(http, base)
        if not s["running"]:
            return s
        await asyncio.sleep(0.25)
    raise TimeoutError("the training run did not end")


def steps_per_s(s: dict) -> float:
    walls = [e["wall_s"] for e in s["epochs"]]
    return s["steps_per_epoch"] * len(walls) / sum(walls)


def cpu_use(first: dict, last: dict, wall: float) -> dict:
    """Cores the server's event loop and its whole process used between two stats."""
    return {"loop": (last["cpu"]["loop"] - first["cpu"]["loop"]) / wall,
            "process": (last["proc_cpu"] - first["proc_cpu"]) / wall}


async def quiet_run(http, base: str, epochs: int) -> dict:
    first, t0 = await stats(http, base), time.monotonic()
    await train(http, base, epochs)
    end = await wait_idle(http, base)
    return {"steps_per_s": steps_per_s(end), "server_cpu": cpu_use(first, end, time.monotonic() - t0)}


async def crowded_run(http, base: str, port: int, epochs: int, clients: int, silent: int, seed: int) -> dict:
    """One run with `clients` viewers; returns throughput, agreement and the hub's state during and after."""
    url = f"ws://127.0.0.1:{port}/train/ws"
    churn, tally = asyncio.Event(), Tally()
    churn.set()
    deadline = asyncio.get_running_loop().time() + 600
    sockets = [await asyncio.to_thread(silent_client, port) for _ in range(silent)]
    watchers = [asyncio.create_task(well_behaved(url, seed * 1000 + i, churn, tally, deadline))
                for i in range(clients - silent)]
    await asyncio.sleep(1.0)
    cpu0, wall0 = time.process_time(), time.monotonic()
    first = await stats(http, base)
    await train(http, base, epochs)
    peak = {"clients": 0, "rss_kb": 0, "tasks": 0}
    while True:  # churn until the last epochs, then everyone watches the end
        s = await stats(http, base)
        for key in peak:
            peak[key] = max(peak[key], s[key])
        if not s["running"] or s["epochs_done"] >= max(1, s["total_epochs"] - 2):
            churn.clear()
            break
        await asyncio.sleep(0.25)
    finals = await asyncio.gather(*watchers)
    end = await wait_idle(http, base)
    client_cpu = (time.process_time() - cpu0) / (time.monotonic() - wall0)
    reference = await fresh_state(url)
    for s in sockets:
        s.close()
    agree = sum(1 for f in finals if f == reference)
    differ = [f for f in finals if f is not None and f != reference]
    return {"steps_per_s": steps_per_s(end), "agree": agree, "watchers": len(finals),
            "missing": sum(1 for f in finals if f is None), "differ": differ, "reference": reference,
            "peak": peak, "tally": tally, "client_cpu": client_cpu, "wall_s": time.monotonic() - wall0,
            "server_cpu": cpu_use(first, end, time.monotonic() - wall0)}


async def settle(http, base: str, timeout: float = 20) -> dict:
    """Stats once the hub has let go of every client (gc'd and trimmed)."""
    deadline = time.monotonic() + timeout
    while True:
        s = await stats(http, base, gc=True)
        if s["clients"] == 0 or time.monotonic() > deadline:
            await asyncio.sleep(0.5)
            return await stats(http, base, gc=True)
        await asyncio.sleep(0.2)


def start_server(data_dir: Path, in_process: bool = False) -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "SDA_THREADS": os.environ.get("SDA_THREADS", "1")}
    server = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--server", "--port", str(port),
                               "--data-dir", str(data_dir), *(["--in-process"] if in_process else [])], env=env)
    import httpx

    for _ in range(400):
        try:
            httpx.get(f"http://127.0.0.1:{port}/bench/stats", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.05)
    return server, port


def stop_server(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGINT)
    try:
        server.wait(20)
    except subprocess.TimeoutExpired:
        server.kill()


async def measure(port: int, clients: int, silent: int, epochs: int, pairs: int = 2) -> dict:
    import httpx

    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(timeout=60) as http:
        await quiet_run(http, base, 2)  # warm-up: torch's import and first allocations are not timed
        before = await settle(http, base)
        quiet, crowded, trail = [], [], []
        for pair in range(pairs):
            quiet.append(await quiet_run(http, base, epochs))
            trail.append(("no viewers", (await settle(http, base))["rss_kb"]))
            crowded.append(await crowded_run(http, base, port, epochs, clients, silent, seed=pair))
            trail.append((f"{clients} clients", (await settle(http, base))["rss_kb"]))
        after = await settle(http, base)
    return {"before": before, "after": after, "quiet": quiet, "crowded": crowded, "trail": trail}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--silent", type=int, default=20, help="clients (of --clients) that never read")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--pairs", type=int, default=5, help="quiet/crowded run pairs")
    parser.add_argument("--in-process", action="store_true",
                        help="train on a thread of the server process (the old design) instead of a child process")
    parser.add_argument("--compare", action="store_true",
                        help="measure both designs, one after the other, and print their ratios side by side")
    args = parser.parse_args()
    if args.server:
        run_server(args.port, args.data_dir, args.in_process)
        return

    data_dir = Path(tempfile.mkdtemp(prefix="sda-load-")) / "data"
    make_dataset(data_dir)
    designs = [True, False] if args.compare else [args.in_process]
    ratios = {}
    for in_process in designs:
        server, port = start_server(data_dir, in_process)
        try:
            result = asyncio.run(measure(port, args.clients, args.silent, args.epochs, args.pairs))
        finally:
            stop_server(server)
        print(f"\n===== training {'on a thread of the server process' if in_process else 'in a child process'} =====")
        ratios[in_process] = report(result, args)
    if args.compare:
        print(f"\n{'throughput ratio, 200 clients vs none':40}{'median pair':>13}{'best vs best':>14}")
        for in_process, (best, median) in ratios.items():
            label = "  training thread in the server" if in_process else "  training process (default)"
            print(f"{label:40}{median:13.3f}{best:14.3f}")


def report(result: dict, args) -> tuple[float, float]:
    """Print one design's results; returns its throughput ratios (best vs best, median pair)."""
    best_quiet = max(q["steps_per_s"] for q in result["quiet"])
    best_crowded = max(c["steps_per_s"] for c in result["crowded"])
    ratio = best_crowded / best_quiet
    pair_ratios = sorted(c["steps_per_s"] / q["steps_per_s"] for q, c in zip(result["quiet"], result["crowded"]))
    median_pair = pair_ratios[len(pair_ratios) // 2]
    n = args.clients
    print(f"\nlive load: {n} clients ({n - args.silent} coming and going at random, ~30% of leaves without a "
          f"goodbye; {args.silent} that never read), real {args.epochs}-epoch training runs, real uvicorn server")
    print(f"\n{'training throughput':34}{'no viewers':>12}{f'{n} clients':>14}{'ratio':>9}")
    print(f"{'  steps/s (better of the runs)':34}{best_quiet:12.3f}{best_crowded:14.3f}{ratio:9.3f}")
    for i, (q, c) in enumerate(zip(result["quiet"], result["crowded"]), 1):
        print(f"{f'  pair {i}: steps/s':34}{q['steps_per_s']:12.3f}{c['steps_per_s']:14.3f}"
              f"{c['steps_per_s'] / q['steps_per_s']:9.3f}")
        print(f"{'    server event loop, cores':34}{q['server_cpu']['loop']:12.3f}{c['server_cpu']['loop']:14.3f}")
        print(f"{'    whole server process, cores':34}{q['server_cpu']['process']:12.3f}"
              f"{c['server_cpu']['process']:14.3f}")
    print(f"{'  median of the pairs':34}{'':12}{'':14}{median_pair:9.3f}")
    print("\nfinal state (chart, stats, controls, outcome, progress, previews) vs a fresh connection after the run")
    for i, c in enumerate(result["crowded"], 1):
        t = c["tally"]
        print(f"  run {i}: {c['agree']}/{c['watchers']} well-behaved clients identical"
              f" ({c['missing']} saw no finish, {len(c['differ'])} differ);"
              f" {t.connects} connects, {t.abrupt} dropped without a goodbye, {t.messages} messages,"
              f" {len(t.errors)} client errors; previews {len(c['reference']['previews'])}")
        print(f"         {t.connects / c['wall_s']:.0f} connects/s; the clients' own process used "
              f"{c['client_cpu']:.2f} of a core (same machine as the server)")
        for err in t.errors[:3]:
            print(f"    client error: {err}")
    before, after = result["before"], result["after"]
    peak = {k: max(c["peak"][k] for c in result["crowded"]) for k in ("clients", "rss_kb", "tasks")}
    print(f"\n{'server':34}{'before':>12}{'peak':>14}{'after':>10}{'after/before':>14}")
    print(f"{'  RSS (MB, after gc+trim)':34}{before['rss_kb'] / 1024:12.1f}{peak['rss_kb'] / 1024:14.1f}"
          f"{after['rss_kb'] / 1024:10.1f}{after['rss_kb'] / before['rss_kb']:14.3f}")
    trail = ", ".join(f"{rss / 1024:.0f} ({label})" for label, rss in result["trail"])
    print(f"{'  RSS after each run (MB)':34}{before['rss_kb'] / 1024:12.0f} -> {trail}")
    print(f"{'  hub clients':34}{before['clients']:12d}{peak['clients']:14d}{after['clients']:10d}")
    print(f"{'  asyncio tasks':34}{before['tasks']:12d}{peak['tasks']:14d}{after['tasks']:10d}")
    agree_all = all(c["agree"] == c["watchers"] for c in result["crowded"])
    leak_free = after["clients"] == 0 and after["tasks"] <= before["tasks"]
    rss_ok = after["rss_kb"] <= before["rss_kb"] * 1.05 + 10 * 1024
    print(f"\ntargets: throughput ratio >= 0.9 (median of {len(pair_ratios)} pairs) -> "
          f"{'met' if median_pair >= 0.9 else 'NOT met'}; every client's final "
          f"state identical -> {'met' if agree_all else 'NOT met'}; no leaked clients/tasks -> "
          f"{'met' if leak_free else 'NOT met'}; RSS back within 5% + 10 MB -> {'met' if rss_ok else 'NOT met'}")
    return ratio, median_pair


if __name__ == "__main__":
    main()
