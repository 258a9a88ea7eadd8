"""TrainingRunner: one background training run at a time, reported as events.

start()/resume() validate everything they can in the caller's thread (so a
bad config or a missing dataset is an immediate, clear error), then return at
once while the run goes on in the background:

* by default in a child process (`worker.py`), with its own GIL, so a busy
  web server never slows training down and a crash of training never takes
  the server with it;
* with `in_process=True`, on a thread of this process (what tests use to
  inject faults into the engine itself).

Either way a relay thread reports through `callback`, which must only hand
the event off (the web layer uses loop.call_soon_threadsafe; the CLI a
queue). Whatever happens ends in exactly one TrainingCompleteEvent:
completed, cancelled or failed.

torch is imported only where the run happens, so importing this module is cheap.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable

from ..storage import atomic_write_json, read_json
from .config import ConfigError, TrainingConfig
from .devices import resolve_device, torch_threads  # noqa: F401 - part of this module's API
from .events import TrainingCompleteEvent, TrainingEvent
from .runs import RunError, load_run, mark_live, new_run_id, now_iso, run_dir_for, write_run_record
from .session import Session
from .split import split_by_file

Callback = Callable[[TrainingEvent], None]


class RunnerBusy(RuntimeError):
    """A run is already active on this runner."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class TrainingRunner:
    def __init__(self, data_dir: Path | str, *, in_process: bool = False):
        self.data_dir = Path(data_dir)
        self.in_process = in_process
        self._lock = threading.Lock()
        self._stop = threading.Event()  # in-process runs
        self._child = None  # the ChildRun of the active run in a child process
        self._thread: threading.Thread | None = None
        self._active_run: str | None = None
        self.last_session: Session | None = None  # what ran last, for the web layer and benchmarks
        self.epoch_timings: list[dict] = []  # per-epoch timings of the last run, for benchmarks

    # -- public API -------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return self._active_run is not None

    @property
    def current_run_id(self) -> str | None:
        return self._active_run

    @property
    def worker_pid(self) -> int | None:
        """The process that trains the active run (None when idle or in-process)."""
        child = self._child
        return child.pid if child is not None else None

    def start(self, dataset: str, config: TrainingConfig, callback: Callback, device: str = "auto") -> str:
        from ..datasets import DatasetError, load_dataset

        self._ensure_idle()  # checked again under the lock; this answers fast and first
        config = config.validated()
        manifest = load_dataset(self.data_dir, dataset)
        if manifest.file_count == 0:
            raise DatasetError(f"Dataset {manifest.name!r} has no usable sound files; add some on the Data tab.")
        names = [f.name for f in manifest.files]
        train_idx, val_idx = split_by_file(len(names), config.val_fraction, config.seed)
        audio_dir = manifest.audio_dir(self.data_dir)
        with self._lock:
            self._ensure_idle()
            run_id = new_run_id(manifest.name)
            run_dir = run_dir_for(self.data_dir, run_id)
            (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            atomic_write_json(run_dir / "config.json", config.to_dict())
            write_run_record(
                run_dir, run_id=run_id, dataset=manifest.name, status="running", created=now_iso(),
                epochs_done=0, total_epochs=config.epochs, best_val_loss=None, pid=os.getpid(),
                train_files=[names[i] for i in train_idx], val_files=[names[i] for i in val_idx], error=None,
            )
            session = Session(run_id, run_dir, manifest.name, config,
                              [audio_dir / names[i] for i in train_idx], [audio_dir / names[i] for i in val_idx],
                              device, resume=False)
            self._launch(session, callback)
        return run_id

    def resume(self, run_id: str, callback: Callback, epochs: int | None = None, device: str = "auto") -> str:
        from ..datasets import DatasetError

        self._ensure_idle()
        info = load_run(self.data_dir, run_id)
        if not info.has_checkpoint:
            raise RunError(f"Run {run_id!r} has no checkpoint to resume from; start a new run instead.")
        config = TrainingConfig.from_dict(read_json(info.run_dir / "config.json"))
        if epochs is not None:
            config = config.with_overrides(epochs=epochs)
        if config.epochs <= info.epochs_done:
            raise ConfigError(
                f"Run {run_id!r} has already trained {info.epochs_done} of {config.epochs} epochs; "
                f"raise max epochs above {info.epochs_done} to continue it."
            )
        record = read_json(info.run_dir / "run.json")
        other_pid = record.get("pid")
        if info.status == "interrupted" and isinstance(other_pid, int) and other_pid != os.getpid() and _pid_alive(other_pid):
            raise RunError(f"Run {run_id!r} is being trained by another process (pid {other_pid}); stop that one first.")
        from ..datasets import dataset_dir

        audio_dir = dataset_dir(self.data_dir, info.dataset) / "audio"
        train = [audio_dir / n for n in record.get("train_files", []) if (audio_dir / n).is_file()]
        val = [audio_dir / n for n in record.get("val_files", []) if (audio_dir / n).is_file()]
        if not train:
            raise DatasetError(f"The sound files of run {run_id!r} are gone from dataset {info.dataset!r}; it cannot resume.")
        with self._lock:
            self._ensure_idle()
            atomic_write_json(info.run_dir / "config.json", config.to_dict())
            write_run_record(info.run_dir, status="running", total_epochs=config.epochs, pid=os.getpid(), error=None)
            self._launch(Session(run_id, info.run_dir, info.dataset, config, train, val, device, resume=True), callback)
        return run_id

    def cancel(self) -> bool:
        """Ask the active run to stop at the next step boundary (it saves a checkpoint). False if idle."""
        if self._active_run is None:
            return False
        self._stop.set()
        child = self._child
        if child is not None:
            child.cancel()
        return True

    def wait(self, timeout: float | None = None) -> bool:
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    # -- internals --------------------------------------------------------
    def _ensure_idle(self) -> None:
        if self._active_run is not None:
            raise RunnerBusy(f"A training run ({self._active_run}) is already active; cancel it or wait for it to finish.")

    def _launch(self, session: Session, callback: Callback) -> None:
        self._stop.clear()
        self._active_run = session.run_id
        self.last_session = session
        self.epoch_timings = []
        if not self.in_process:
            from .worker import ChildRun

            self._child = ChildRun(session)
        mark_live(session.run_id, True)
        self._thread = threading.Thread(target=self._run, args=(session, self._child, callback),
                                        name=f"train-{session.run_id}", daemon=True)
        self._thread.start()

    def _run(self, session: Session, child, callback: Callback) -> None:
        """The relay thread: runs the session here or in the child, then reports its end."""
        from .session import describe_failure, run_session

        emit = _safely(callback)
        try:
            if child is not None:
                done = child.run(emit, self.epoch_timings.append)
            else:
                done = run_session(session, self._stop, emit, self.epoch_timings.append)
        except BaseException as exc:  # the relay itself broke; still exactly one final event
            done = TrainingCompleteEvent(outcome="failed", epochs_done=0, total_epochs=session.config.epochs,
                                         best_val_loss=None, checkpoint_path=None, error=describe_failure(exc))
        finally:
            mark_live(session.run_id, False)
            self._child = None
            self._active_run = None  # idle before the last event: a listener may start the next run
        emit(done)


def _safely(callback: Callback) -> Callback:
    def emit(event: TrainingEvent) -> None:
        try:
            callback(event)
        except Exception:  # a broken listener must not kill the run
            pass
    return emit
