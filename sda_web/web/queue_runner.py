"""The server's side of the training queue: it starts the next queued run whenever a device is free.

    Train pressed ──> RunQueue.add (data/queue.json) ──> wake
    `sda train` (another process) ──> RunQueue.add ──> seen by the poll below
    wake / a run ended / every POLL_S ──> dispatch: for each idle device, claim the
        next entry and start it on that device's TrainingRunner (its warm process)

One TrainingRunner per device (training/devices.py: every CUDA GPU, else the
CPU), each training in its own child process. The Train tab shows the newest
run live; the queue panel (#train-queue, pushed over the same WebSocket) lists
every run: training (with its device), waiting (with who asked and an estimated
start), ones that could not start, and interrupted ones that can resume.

Only one server executes a data directory's queue (training/queue.ExecutorLock);
a second server on the same folder still serves pages and queues runs, and the
first one runs them.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from ..datasets import DatasetError
from ..storage import read_json
from ..training.config import ConfigError, TrainingConfig
from ..training.events import TrainingCompleteEvent
from ..training.queue import ExecutorLock, QueueEntry, RunQueue
from ..training.queue_view import QueueView, build_queue_view
from ..generation.after_training import analyse_trained_run  # torch-free: the training process loads the rest
from ..training.runner import RunnerBusy, TrainingRunner
from ..training.runs import RunError, list_previews, load_history, load_run
from . import fragments
from .common import cancel_task, spawn

log = logging.getLogger(__name__)

POLL_S = 0.5  # how soon a run queued by another process (sda train) is seen
REFRESH_S = 5.0  # how often the panel's estimates are redrawn while something trains
KEEP_ENDED = 3


@dataclass(frozen=True)
class EndedRun:
    """A run the queue ran that has just ended: shown in the panel for a while."""

    run_id: str | None
    dataset: str
    requested_by: str
    outcome: str
    epochs_done: int
    total_epochs: int
    at: float


class QueueRunner:
    def __init__(self, app, devices: list[str], runners: dict | None = None):
        """`runners`: device -> runner, for tests (a scripted runner); else TrainingRunners made on first use."""
        self.app = app
        self.devices = list(runners) if runners else list(devices)
        self.queue = RunQueue(app.state.data_dir)
        self._runners: dict = dict(runners or {})
        self._lock = ExecutorLock(app.state.data_dir)
        self.executing = False
        self.ended: list[EndedRun] = []
        self._tokens: dict[str, int] = {}  # entry id -> the hub token of its run
        self._cancelled: set[str] = set()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._seen_version = None
        self._refreshed = 0.0
        self._stopping = False
        app.state.hub.queue_html = fragments.queue(app.state.hub.env, QueueView())  # the panel is always there

    # ---- runners ---------------------------------------------------------------

    def runner(self, device: str):
        runner = self._runners.get(device)
        if runner is None:
            runner = self._runners[device] = TrainingRunner(self.app.state.data_dir, keep_warm=True,
                                                            after_training=analyse_trained_run)
        return runner

    @property
    def runners(self) -> list:
        """Every runner made so far (one per device that has trained)."""
        return list(self._runners.values())

    def active_runners(self) -> list:
        return [r for r in self._runners.values() if r.is_running]

    def runner_of(self, run_id: str | None):
        """The runner training `run_id` (None: not training here)."""
        return next((r for r in self.active_runners() if run_id and r.current_run_id == run_id), None)

    @property
    def is_running(self) -> bool:
        return bool(self.active_runners())

    def prewarm(self) -> None:
        for device in self.devices:
            self.runner(device).prewarm()

    # ---- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self.executing = await asyncio.to_thread(self._acquire)
        if self.executing:
            dropped = await asyncio.to_thread(self.queue.recover)
            for entry in dropped:
                log.info("run %s (%s) was training when the server stopped; it can be resumed", entry.run_id,
                         entry.dataset)
        else:
            log.warning("another server runs the training queue of %s; this one only adds to it",
                        self.app.state.data_dir)
        self._task = asyncio.create_task(self._loop(), name="queue-runner")

    async def stop(self) -> None:
        await cancel_task(self._task)
        self._task = None
        self._stopping = True  # a run ending now must not start the next one
        training = (await asyncio.to_thread(self.queue.state)).running if self.executing else []
        for runner in self.active_runners():
            runner.cancel()  # checkpoint at the next step
        for runner in list(self._runners.values()):
            await asyncio.to_thread(runner.wait, 30)
            runner.close()
        for entry in training:  # back to the front: the next start of the server continues them
            status = await asyncio.to_thread(_stopped_how, self.app.state.data_dir, entry.run_id)
            if status in ("completed", "stopped", "failed"):  # it ended by itself meanwhile
                await asyncio.to_thread(self.queue.finished, entry.entry_id)
            else:
                await asyncio.to_thread(self.queue.put_back, entry.entry_id, status == "resumable")
        self._lock.release()

    def _acquire(self) -> bool:
        for _ in range(20):  # `sda queue` may be peeking at the lock this instant
            if self._lock.acquire():
                return True
            time.sleep(0.05)
        return False

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), POLL_S)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.step()
            except Exception:  # a bug here must not stop the queue for good
                log.exception("training queue step failed")

    async def step(self) -> None:
        if self.executing:
            await self.dispatch()
            await self._pass_on_cancels()
        version = await asyncio.to_thread(self.queue.version)
        now = time.monotonic()
        if version != self._seen_version or (self.is_running and now - self._refreshed >= REFRESH_S):
            self._seen_version = version
            await self.publish()

    # ---- starting runs -------------------------------------------------------------

    async def dispatch(self) -> None:
        """Start the next waiting runs on every idle device."""
        if not self.executing or self._stopping:
            return
        state = await asyncio.to_thread(self.queue.state)
        if not state.waiting:
            return
        claimed = False
        async with self.app.state.start_lock:
            for device in self.devices:
                runner = self.runner(device)
                while not runner.is_running:
                    entry = await asyncio.to_thread(self.queue.claim_next, device)
                    if entry is None:
                        break
                    claimed = True
                    await self._start(entry, device, runner)  # on failure, the next waiting one is tried
        if claimed:
            await self.publish()

    async def _start(self, entry: QueueEntry, device: str, runner) -> bool:
        hub = self.app.state.hub
        past = await asyncio.to_thread(_past_of, self.app.state.data_dir, entry)
        hub.flush()  # a run that just ended shows its finished frame before this one takes the screen
        previous, token = hub.view, hub.new_token()
        hub.begin(token, run_id=entry.run_id if entry.kind == "resume" else None, dataset=entry.dataset,
                  total_epochs=past.total_epochs, history=past.history, previews=past.previews,
                  preview_every=past.preview_every)
        callback = self._callback(token, entry)
        try:
            if entry.kind == "resume":
                run_id = await asyncio.to_thread(runner.resume, entry.run_id, callback, epochs=entry.epochs,
                                                 device=device)
            else:
                config = TrainingConfig.from_dict(entry.config or {})
                run_id = await asyncio.to_thread(runner.start, entry.dataset, config, callback, device=device,
                                                 start_from=entry.start_from)
        except Exception as exc:
            hub.abort(token, previous)
            await asyncio.to_thread(self.queue.failed, entry, start_error(exc))
            return False
        self._tokens[entry.entry_id] = token
        hub.attach_run(token, run_id)
        await asyncio.to_thread(self.queue.started, entry.entry_id, run_id)
        return True

    def _callback(self, token: int, entry: QueueEntry):
        emit = self.app.state.hub.callback_for(token)
        loop = asyncio.get_running_loop()

        def callback(event) -> None:
            emit(event)
            if isinstance(event, TrainingCompleteEvent):
                try:
                    loop.call_soon_threadsafe(self._ended, entry, event)
                except RuntimeError:  # the loop is closed: the server is stopping
                    pass

        return callback

    def _ended(self, entry: QueueEntry, done: TrainingCompleteEvent) -> None:
        spawn(self.app, self._after_end(entry, done))

    async def _after_end(self, entry: QueueEntry, done: TrainingCompleteEvent) -> None:
        if self._stopping:
            return  # stop() puts it back in the queue
        hub = self.app.state.hub
        hub.flush()  # its finished frame goes out before the next run takes the screen
        token = self._tokens.pop(entry.entry_id, None)
        self._cancelled.discard(entry.entry_id)
        run_id = ((await asyncio.to_thread(self.queue.state)).find(entry.entry_id) or entry).run_id
        self.ended = [EndedRun(run_id, entry.dataset, entry.requested_by, done.outcome, done.epochs_done,
                               done.total_epochs, time.time()), *self.ended][:KEEP_ENDED]
        await asyncio.to_thread(self.queue.finished, entry.entry_id)
        await self.dispatch()
        if hub.view.token == token:  # nothing new took the screen: show a run still training elsewhere
            await self._show_another_live_run()
        await self.publish()

    async def _show_another_live_run(self) -> None:
        hub = self.app.state.hub
        state = await asyncio.to_thread(self.queue.state)
        for entry in state.running:
            token = self._tokens.get(entry.entry_id)
            if token is None or not entry.run_id:
                continue
            past = await asyncio.to_thread(_past_of, self.app.state.data_dir, entry, live=True)
            hub.begin(token, run_id=entry.run_id, dataset=entry.dataset, total_epochs=past.total_epochs,
                      history=past.history, previews=past.previews, preview_every=past.preview_every,
                      status="running")
            return

    async def _pass_on_cancels(self) -> None:
        """`sda train` asked (Ctrl-C) to cancel the run it follows."""
        state = await asyncio.to_thread(self.queue.state)
        for entry in state.running:
            if entry.cancel_requested and entry.entry_id not in self._cancelled:
                runner = self.runner_of(entry.run_id)
                if runner is not None and runner.cancel():
                    self._cancelled.add(entry.entry_id)
                    if self.app.state.hub.view.run_id == entry.run_id:
                        self.app.state.hub.set_cancelling()

    # ---- the panel -------------------------------------------------------------------

    async def publish(self) -> QueueView:
        """Redraw the queue panel for every viewer; the view it drew."""
        hub = self.app.state.hub
        state = await asyncio.to_thread(self.queue.state)
        view = await asyncio.to_thread(build_queue_view, self.app.state.data_dir, state, len(self.devices),
                                       self.ended, hub.view)
        self._refreshed = time.monotonic()
        hub.set_queue(fragments.queue(hub.env, view))
        return view


@dataclass(frozen=True)
class _Past:
    total_epochs: int
    history: list
    previews: list
    preview_every: int | None


def _past_of(data_dir, entry: QueueEntry, live: bool = False) -> _Past:
    """What a run has behind it, for the chart it opens with: nothing for a new run; a resumed
    (or `live`, already training) run's epochs and previews so far."""
    total = entry.total_epochs or 0
    if entry.kind == "new" and not live:
        config = entry.config or {}
        return _Past(total, [], [], config.get("preview_every"))
    try:
        info = load_run(data_dir, entry.run_id)
        config = TrainingConfig.from_dict(read_json(info.run_dir / "config.json"))
        if not live and entry.epochs:
            config = config.with_overrides(epochs=entry.epochs)
        done = info.epochs_done
        history = [m for m in load_history(info.run_dir) if live or m.epoch <= done]
        previews = [p for p in list_previews(info.run_dir) if live or p.epoch <= done]
        return _Past(config.epochs, history, previews, config.preview_every)
    except (RunError, OSError, ValueError, TypeError, ConfigError):
        return _Past(total, [], [], None)


def _stopped_how(data_dir, run_id: str | None) -> str:
    """How a run the server cancelled on its way down stands: "resumable" (a checkpoint to
    continue from), "unstarted", or the outcome it reached by itself."""
    try:
        info = load_run(data_dir, run_id) if run_id else None
    except RunError:
        info = None
    if info is None or not info.has_checkpoint:
        return "unstarted"
    if info.status in ("completed", "stopped", "failed"):
        return info.status
    return "resumable"


def start_error(exc: Exception) -> str:
    """One sentence for a run that could not start."""
    if isinstance(exc, (ConfigError, DatasetError, RunError, RunnerBusy)):
        return str(exc)
    return f"Training could not start ({type(exc).__name__}: {exc})."
