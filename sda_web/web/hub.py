"""LiveHub: the runner's events in, the same HTML fragments out to every browser.

    runner's relay thread --callback--> loop.call_soon_threadsafe(queue.put_nowait)
        --> hub task: update the RunView, render each fragment once
        --> every client's bounded Outbox --> its sender task --> WebSocket

Training never waits on the web. Each client has its own outbox
and sender task, so a slow or stalled browser only delays itself:

* chart, stats, progress and controls frames are keyed: a newer one replaces
  a pending one (latest wins), so a stalled client holds at most one of each;
* previews and the finished frame are never dropped; if a client falls so far
  behind that its outbox overflows anyway, the outbox is replaced by one
  full-state frame, which contains every preview and the outcome;
* every connect (and htmx's reconnects) starts with the full current state.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from typing import Callable

import jinja2
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..training.events import (
    EpochMetrics,
    PreviewEvent,
    RunStarted,
    StepProgress,
    TrainingCompleteEvent,
)
from . import fragments
from .common import cancel_task
from .view import ResumeOffer, RunView

log = logging.getLogger(__name__)

STATE = "state"  # the key of a full-state frame: it supersedes everything pending
KEYED = ("chart", "stats", "progress", "controls", "outcome")  # the queue panel is keyed too: set_queue


class Outbox:
    """Frames waiting for one client. Bounded; keyed frames coalesce."""

    def __init__(self, limit: int, resync: Callable[[], str]):
        self.limit = limit
        self._resync = resync  # renders a full-state frame when we overflow
        self._items: deque[tuple[str | None, str]] = deque()
        self._ready = asyncio.Event()
        self.overflows = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, key: str | None, html: str) -> None:
        if key == STATE:
            self._items.clear()
        elif key is not None:
            # Latest wins, and it moves to the back so it lands after anything
            # queued before it (a finished frame also carries controls/stats).
            for i, (k, _) in enumerate(self._items):
                if k == key:
                    del self._items[i]
                    break
        self._items.append((key, html))
        if len(self._items) > self.limit:
            self.overflows += 1
            self._items.clear()
            self._items.append((STATE, self._resync()))
        self._ready.set()

    async def take(self) -> str:
        """Everything pending, joined into one message (htmx swaps each element by id)."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        message = "".join(html for _, html in self._items)
        self._items.clear()
        return message

    def pending(self) -> list[tuple[str | None, str]]:
        return list(self._items)


class Client:
    def __init__(self, hub: "LiveHub", websocket: WebSocket | None, log_scale: bool):
        self.websocket = websocket
        self.log_scale = log_scale
        self.outbox = Outbox(hub.outbox_limit, lambda: hub.state_html(self.log_scale))
        self.sent = 0


class LiveHub:
    def __init__(self, env: jinja2.Environment, *, outbox_limit: int = 64):
        self.env = env
        self.outbox_limit = outbox_limit
        self.view = RunView()
        self.clients: set[Client] = set()
        self._tokens = 0
        self._queue: asyncio.Queue | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._state_cache: dict[bool, str] = {}
        self._on_finished: list[Callable[[RunView], None]] = []
        self.queue_html = ""  # the queue panel, rendered by web/queue_runner.py

    # ---- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="live-hub")

    async def stop(self) -> None:
        await cancel_task(self._task)
        self._task = None
        for client in list(self.clients):
            if client.websocket is not None:
                try:
                    await client.websocket.close(1001)
                except Exception:  # already gone
                    pass
        self.clients.clear()

    def on_finished(self, hook: Callable[[RunView], None]) -> None:
        """Call `hook(view)` on the loop after each run's finished frame went out."""
        self._on_finished.append(hook)

    # ---- the thread-safe way in -------------------------------------------

    def new_token(self) -> int:
        self._tokens += 1
        return self._tokens

    def callback_for(self, token: int) -> Callable[[object], None]:
        """The runner callback: a non-blocking hand-off onto the event loop."""
        loop, queue = self._loop, self._queue
        if loop is None or queue is None:
            raise RuntimeError("LiveHub.start() has not run.")

        def emit(event) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (token, event))
            except RuntimeError:  # loop closed: the server is shutting down
                pass

        return emit

    # ---- views set from the loop (routes) ---------------------------------

    def begin(self, token: int, *, run_id: str, dataset: str, total_epochs: int,
              history=(), previews=(), preview_every: int | None = None, status: str = "starting") -> None:
        """A run was just started or resumed (or, with status "running", one already training on
        another device takes the screen); show it from its first frame."""
        history = list(history)
        self.view = RunView(
            token=token,
            run_id=run_id,
            dataset=dataset,
            status=status,
            total_epochs=total_epochs,
            start_epoch=history[-1].epoch if history else 0,
            history=history,
            previews=list(previews),
            preview_every=preview_every,
        )
        self._broadcast_state()

    def attach_run(self, token: int, run_id: str) -> None:
        """The runner answered with the run's id (RunStarted may already have said so)."""
        if self.view.token == token and self.view.run_id != run_id:
            self.view.run_id = run_id
            self._changed()

    def abort(self, token: int, previous: RunView) -> None:
        """The runner refused to start: put back what was on screen."""
        if self.view.token == token:
            self.view = previous
            self._broadcast_state()

    def show(self, view: RunView) -> None:
        """Show a run that is not live (read from disk), or nothing."""
        if self.view.running:
            return
        self.view = view
        self._broadcast_state()

    def set_queue(self, html: str) -> None:
        if html == self.queue_html:
            return
        self.queue_html = html
        self._changed()
        for client in self.clients:
            client.outbox.put("queue", html)

    def flush(self) -> None:
        """Apply the events already handed over, now (before the screen moves to another run)."""
        if self._queue is not None and not self._queue.empty():
            self._process_pending([])

    def set_cancelling(self) -> None:
        if self.view.running:
            self.view.cancelling = True
            self._changed()
            self._fan_out([], {"controls"})

    def set_resume(self, offer: ResumeOffer | None) -> None:
        self.view.resume = offer
        self._changed()
        self._fan_out([], {"controls"})

    # ---- clients -----------------------------------------------------------

    def state_html(self, log_scale: bool = False) -> str:
        html = self._state_cache.get(log_scale)
        if html is None:
            html = self._state_cache[log_scale] = fragments.state(self.env, self.view, log_scale) + self.queue_html
        return html

    def add_client(self, websocket: WebSocket | None = None, log_scale: bool = False) -> Client:
        client = Client(self, websocket, log_scale)
        client.outbox.put(STATE, self.state_html(log_scale))
        self.clients.add(client)
        return client

    def remove_client(self, client: Client) -> None:
        self.clients.discard(client)
        client.outbox._items.clear()

    async def serve(self, websocket: WebSocket, log_scale: bool = False) -> None:
        """Run one WebSocket: full state first, then live frames, until it goes."""
        await websocket.accept()
        client = self.add_client(websocket, log_scale)
        sender = asyncio.create_task(self._send_loop(client), name="live-sender")
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                self._handle_message(client, message.get("text"))
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self.remove_client(client)
            sender.cancel()
            try:
                await sender
            except (asyncio.CancelledError, Exception):
                pass

    async def _send_loop(self, client: Client) -> None:
        try:
            while True:
                message = await client.outbox.take()
                await client.websocket.send_text(message)
                client.sent += 1
        except asyncio.CancelledError:
            raise
        except Exception:  # the socket closed under us; the receive loop will notice
            log.debug("live client send failed", exc_info=True)

    def _handle_message(self, client: Client, text: str | None) -> None:
        """htmx ws-send posts the chart options form as JSON: switch this client's scale."""
        if not text:
            return
        try:
            data = json.loads(text)
        except ValueError:
            return
        if not isinstance(data, dict) or "chart_options" not in data:
            return
        log_scale = bool(data.get("log_scale"))
        if log_scale != client.log_scale:
            client.log_scale = log_scale
            client.outbox.put("chart", fragments.chart(self.env, self.view, log_scale))

    # ---- the hub task ------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._process_pending([await self._queue.get()])

    def _process_pending(self, batch: list) -> None:
        while not self._queue.empty():  # events that piled up: render keyed frames once
            batch.append(self._queue.get_nowait())
        try:
            self.process(batch)
        except Exception:  # a rendering bug must not kill the live path
            log.exception("live hub failed to process events")

    def process(self, batch: list[tuple[int, object]]) -> None:
        """Apply events to the view, then render and fan out their fragments once."""
        view = self.view
        frames: list[str] = []  # never dropped, in order
        dirty: set[str] = set()
        finished = False
        for token, event in batch:
            if token != view.token:
                continue  # a straggler from an earlier run
            if isinstance(event, StepProgress):
                view.progress = event
                if view.status == "starting":
                    view.status = "running"
                    dirty |= {"stats", "controls"}
                dirty.add("progress")
            elif isinstance(event, EpochMetrics):
                while view.history and view.history[-1].epoch >= event.epoch:
                    view.history.pop()  # a resumed run redoes epochs after its checkpoint
                view.history.append(event)
                view.total_epochs = event.total_epochs
                view.status = "running"
                dirty |= {"chart", "stats"}
            elif isinstance(event, PreviewEvent):
                view.previews = [p for p in view.previews if p.epoch != event.epoch] + [event]
                frames.append(fragments.preview_appended(self.env, view, event))
            elif isinstance(event, RunStarted):
                view.status = "running"
                view.run_id = event.run_id
                view.total_epochs = event.total_epochs
                view.start_epoch = event.start_epoch
                view.device = event.device
                dirty |= {"stats", "controls", "progress"}
            elif isinstance(event, TrainingCompleteEvent):
                view.status = event.outcome
                view.error = event.error
                view.best_val_loss = event.best_val_loss
                view.patience = event.patience
                view.total_epochs = event.total_epochs or view.total_epochs
                view.cancelling = False
                view.progress = None
                frames.append(fragments.finished(self.env, view))
                dirty -= {"stats", "controls", "progress", "outcome"}
                finished = True
        if not frames and not dirty:
            return
        self._changed()
        self._fan_out(frames, dirty)
        if finished:
            for hook in self._on_finished:
                hook(view)

    # ---- fan-out -----------------------------------------------------------

    def _changed(self) -> None:
        self._state_cache.clear()

    def _broadcast_state(self) -> None:
        self._changed()
        for client in self.clients:
            client.outbox.put(STATE, self.state_html(client.log_scale))

    def _fan_out(self, frames: list[str], dirty: set[str]) -> None:
        if not self.clients:
            return
        env, view = self.env, self.view
        keyed = []
        for key in KEYED:  # fixed order: chart first, controls last
            if key in dirty and key != "chart":
                keyed.append((key, getattr(fragments, key)(env, view)))
        charts: dict[bool, str] = {}
        for client in self.clients:
            outbox = client.outbox
            for html in frames:
                outbox.put(None, html)
            if "chart" in dirty:
                html = charts.get(client.log_scale)
                if html is None:
                    html = charts[client.log_scale] = fragments.chart(env, view, client.log_scale)
                outbox.put("chart", html)
            for key, html in keyed:
                outbox.put(key, html)
