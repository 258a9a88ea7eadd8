"""The data directory's queue of training runs: durable, shared by every process.

    <data>/queue.json   {"entries": [...], "failures": [...]}
    <data>/queue.lock   flock'd around every read-modify-write

Several people on one studio machine press Train while a run is training; their
runs wait here in order instead of being refused. The web server (the queue's
*executor*, web/queue_runner.py) starts the next one whenever a device is free;
`sda train` on a data directory whose server is running adds its run here too
and follows it. The file survives a restart or a kill -9 of the server: queued
runs stay queued; an entry that was "running" when the server died is dropped
at the next start (its run shows as interrupted, with Resume, as always).

Entries are plain JSON so a run queued by one process can be started by another;
every change is one locked read-modify-write followed by an atomic replace, so a
reader never sees half a file and two writers never lose each other's change.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..storage import atomic_write_json, read_json

QUEUE_FILE = "queue.json"
LOCK_FILE = "queue.lock"
EXECUTOR_FILE = "queue.executor"
KEEP_FAILURES = 5  # the latest runs that could not start, shown until they age out

QUEUED, RUNNING = "queued", "running"


class QueueError(ValueError):
    """A queue operation the user asked for cannot be done; the message says why."""


@dataclass(frozen=True)
class QueueEntry:
    entry_id: str
    kind: str  # "new" (a run from scratch or from a model) | "resume" (continue run_id)
    dataset: str
    requested_by: str  # who pressed Train: "192.168.1.23" or "sda train (pid 4242)"
    queued_at: float  # unix time
    config: dict | None = None  # TrainingConfig.to_dict() of a new run
    start_from: str | None = None  # the model a new run starts from
    epochs: int | None = None  # a resume's new max epochs (None: its own)
    run_id: str | None = None  # the run it resumes, or the run it became once started
    state: str = QUEUED  # queued | running
    device: str | None = None  # where it trains, once running
    started_at: float | None = None
    cancel_requested: bool = False  # a follower (sda train, Ctrl-C) asks the executor to cancel it

    @property
    def preset(self) -> str:
        return str((self.config or {}).get("preset", "")) if self.kind == "new" else "resume"

    @property
    def total_epochs(self) -> int | None:
        return self.epochs if self.kind == "resume" else (self.config or {}).get("epochs")

    def same_request(self, other: "QueueEntry") -> bool:
        """Two presses of Train for the same thing (a double click, or two people alike)."""
        return (self.kind, self.dataset, self.config, self.start_from, self.epochs, self.run_id if self.kind == "resume"
                else None) == (other.kind, other.dataset, other.config, other.start_from, other.epochs,
                               other.run_id if other.kind == "resume" else None)

    @classmethod
    def from_dict(cls, data: dict) -> "QueueEntry | None":
        try:
            known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
            entry = cls(**known)
        except TypeError:
            return None
        if entry.kind not in ("new", "resume") or entry.state not in (QUEUED, RUNNING) or not entry.dataset:
            return None
        return entry


@dataclass(frozen=True)
class QueueFailure:
    """A queued run that could not start when its turn came."""

    entry_id: str
    dataset: str
    requested_by: str
    error: str  # one sentence
    at: float

    @classmethod
    def from_dict(cls, data: dict) -> "QueueFailure | None":
        try:
            return cls(str(data["entry_id"]), str(data["dataset"]), str(data.get("requested_by", "")),
                       str(data["error"]), float(data.get("at", 0.0)))
        except (KeyError, TypeError, ValueError):
            return None


@dataclass
class QueueState:
    entries: list[QueueEntry] = field(default_factory=list)
    failures: list[QueueFailure] = field(default_factory=list)

    @property
    def running(self) -> list[QueueEntry]:
        return [e for e in self.entries if e.state == RUNNING]

    @property
    def waiting(self) -> list[QueueEntry]:
        return [e for e in self.entries if e.state == QUEUED]

    def find(self, entry_id: str) -> QueueEntry | None:
        return next((e for e in self.entries if e.entry_id == entry_id), None)

    def position(self, entry_id: str) -> int | None:
        """1 for the next to start."""
        for i, entry in enumerate(self.waiting, start=1):
            if entry.entry_id == entry_id:
                return i
        return None


class RunQueue:
    def __init__(self, data_dir: Path | str):
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / QUEUE_FILE

    # ---- reading -------------------------------------------------------------

    def state(self) -> QueueState:
        """The queue as it is on disk (a missing or damaged file is an empty queue)."""
        try:
            raw = read_json(self.path)
        except FileNotFoundError:
            return QueueState()
        except (OSError, ValueError):
            return QueueState()  # a damaged file: treat as empty rather than refuse every Train
        if not isinstance(raw, dict):
            return QueueState()
        entries = [e for e in (QueueEntry.from_dict(d) for d in raw.get("entries", []) if isinstance(d, dict)) if e]
        failures = [f for f in (QueueFailure.from_dict(d) for d in raw.get("failures", []) if isinstance(d, dict)) if f]
        return QueueState(entries, failures)

    def version(self) -> int:
        """Changes whenever the file does (a cheap poll for other processes' changes)."""
        try:
            return self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    # ---- changing --------------------------------------------------------------

    def add(self, *, kind: str, dataset: str, requested_by: str, config: dict | None = None,
            start_from: str | None = None, epochs: int | None = None, run_id: str | None = None) -> QueueEntry:
        """Queue a run; the same request already waiting or training is refused (a double click)."""
        entry = QueueEntry(entry_id=secrets.token_hex(4), kind=kind, dataset=dataset, requested_by=requested_by,
                           queued_at=time.time(), config=config, start_from=start_from, epochs=epochs, run_id=run_id)
        with self._changing() as state:
            if kind == "resume" and any(e.run_id == run_id for e in state.entries):
                raise QueueError(f"Run {run_id!r} is already {_where(state, run_id)}; nothing was added.")
            same = next((e for e in state.entries if e.same_request(entry)), None)
            if same is not None:
                raise QueueError(f"The same run on “{dataset}” is already {_describe(state, same)}; nothing was added.")
            state.entries.append(entry)
        return entry

    def remove(self, entry_id: str) -> QueueEntry:
        with self._changing() as state:
            entry = _waiting(state, entry_id, "is training now; cancel it instead")
            state.entries.remove(entry)
        return entry

    def move_to_front(self, entry_id: str) -> QueueEntry:
        with self._changing() as state:
            entry = _waiting(state, entry_id, "is already training")
            state.entries.remove(entry)
            first_waiting = next((i for i, e in enumerate(state.entries) if e.state == QUEUED), len(state.entries))
            state.entries.insert(first_waiting, entry)
        return entry

    def claim_next(self, device: str) -> QueueEntry | None:
        """The next waiting run, now marked running on `device` (None: nothing waits)."""
        with self._changing() as state:
            entry = next(iter(state.waiting), None)
            if entry is None:
                return None
            claimed = replace(entry, state=RUNNING, device=device, started_at=time.time())
            state.entries[state.entries.index(entry)] = claimed
        return claimed

    def started(self, entry_id: str, run_id: str) -> None:
        """The runner answered with the run's id: a follower can now read the run's folder."""
        self._update(entry_id, run_id=run_id)

    def request_cancel(self, entry_id: str) -> None:
        self._update(entry_id, cancel_requested=True)

    def finished(self, entry_id: str) -> None:
        """The run ended (any outcome): it leaves the queue."""
        with self._changing() as state:
            state.entries = [e for e in state.entries if e.entry_id != entry_id]

    def failed(self, entry: QueueEntry, error: str) -> None:
        """Its turn came but it could not start: it leaves the queue with its reason."""
        with self._changing() as state:
            state.entries = [e for e in state.entries if e.entry_id != entry.entry_id]
            state.failures = [*state.failures, QueueFailure(entry.entry_id, entry.dataset, entry.requested_by,
                                                            error, time.time())][-KEEP_FAILURES:]

    def put_back(self, entry_id: str, resumable: bool) -> None:
        """A server stopping on purpose cancelled this run: it goes back to the front, to continue
        (`resumable`: it has a checkpoint) or to start again, when a server runs the queue next."""
        with self._changing() as state:
            entry = state.find(entry_id)
            if entry is None:
                return
            state.entries.remove(entry)
            if resumable and entry.run_id:
                back = replace(entry, kind="resume", state=QUEUED, device=None, started_at=None, epochs=None,
                               cancel_requested=False)
            else:
                back = replace(entry, state=QUEUED, device=None, started_at=None, cancel_requested=False,
                               run_id=None if entry.kind == "new" else entry.run_id)
            state.entries.insert(0, back)

    def recover(self) -> list[QueueEntry]:
        """At the executor's start: entries left "running" by a server that died are dropped (their
        runs are interrupted and resumable); the waiting ones stay, in order."""
        with self._changing() as state:
            dropped = state.running
            state.entries = state.waiting
        return dropped

    # ---- internals -------------------------------------------------------------

    def _update(self, entry_id: str, **changes) -> None:
        with self._changing() as state:
            entry = state.find(entry_id)
            if entry is not None:
                state.entries[state.entries.index(entry)] = replace(entry, **changes)

    @contextlib.contextmanager
    def _changing(self):
        """Lock, read, let the caller change the state, write it back atomically."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / LOCK_FILE, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                state = self.state()
                before = _as_json(state)
                yield state
                after = _as_json(state)
                if after != before:  # an unchanged queue keeps its mtime: pollers see no change
                    atomic_write_json(self.path, after)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _waiting(state: QueueState, entry_id: str, if_running: str) -> QueueEntry:
    """The waiting entry a viewer clicked, or why it cannot be changed."""
    entry = state.find(entry_id)
    if entry is None:
        raise QueueError("That run is no longer in the queue.")
    if entry.state == RUNNING:
        raise QueueError(f"The run on “{entry.dataset}” {if_running}.")
    return entry


def _as_json(state: QueueState) -> dict:
    return {"entries": [asdict(e) for e in state.entries], "failures": [asdict(f) for f in state.failures]}


def _where(state: QueueState, run_id: str | None) -> str:
    entry = next(e for e in state.entries if e.run_id == run_id)
    return _describe(state, entry)


def _describe(state: QueueState, entry: QueueEntry) -> str:
    if entry.state == RUNNING:
        return "training"
    return f"queued ({ordinal(state.position(entry.entry_id) or 1)})"


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# ---- who executes the queue ------------------------------------------------------

class ExecutorLock:
    """Held by the one server that starts the queue's runs for a data directory.

    An flock on <data>/queue.executor: the kernel lets it go when the process dies
    (kill -9 included), so a stale file never blocks the next server, and `sda train`
    can ask "is a server running here?" without trusting a pid."""

    def __init__(self, data_dir: Path | str):
        self.path = Path(data_dir) / EXECUTOR_FILE
        self._file = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        return True

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def executor_running(data_dir: Path | str) -> bool:
    """Whether a server is executing this data directory's queue right now."""
    path = Path(data_dir) / EXECUTOR_FILE
    if not path.exists():
        return False
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False
