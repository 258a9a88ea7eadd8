"""TrainingRunner: one background training run at a time on one device, reported as events.

start()/resume() validate everything they can in the caller's thread (so a
bad config or a missing dataset is an immediate, clear error), then return at
once while the run goes on in the background:

* by default in a child process (`worker.py`), with its own GIL, so a busy
  web server never slows training down and a crash of training never takes
  the server with it; with `keep_warm` the next process is started as soon
  as a run starts, so the next run (the queue's next, web/queue_runner.py)
  skips torch's import;
* with `in_process=True`, on a thread of this process (what tests use to
  inject faults into the engine itself).

Either way one thread reports through `callback`, which must only hand
the event off (the web layer uses loop.call_soon_threadsafe; the CLI a
queue). Whatever happens ends in exactly one TrainingCompleteEvent:
completed, cancelled or failed.

torch is imported only where the run happens, so importing this module is cheap.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..datasets import DatasetError, dataset_dir, load_dataset
from ..storage import atomic_write_json, read_json
from .config import ConfigError, TrainingConfig
from .events import TrainingCompleteEvent, TrainingEvent
from .runs import (SEGMENT_MODEL_CANNOT_RESUME, RunError, RunInfo, is_imported, is_segment_run, load_run, mark_live,
                   new_run_id, now_iso, run_dir_for, write_run_record)
from .session import Session, describe_failure, run_session
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
    def __init__(self, data_dir: Path | str, *, in_process: bool = False, keep_warm: bool = False,
                 after_training: Callable[[Path, object], None] | None = None, after_cancel: bool = True):
        """`keep_warm`: after each run, start the next training process at once, so the next
        run (or resume) skips torch's import; costs an idle process. The web app keeps one.
        `after_training(run_dir, device)`: run in the training process once a run has trained
        (`generation.after_training.analyse_trained_run` makes the sound controls); a module-level
        function, so that it can travel there. `after_cancel=False`: not after a cancelled run
        (a terminal's Ctrl-C wants out at once; the controls are made when the model is first used)."""
        self.data_dir = Path(data_dir)
        self.after_training = after_training
        self.after_cancel = after_cancel
        self.in_process = in_process
        self.keep_warm = keep_warm and not in_process
        self._lock = threading.Lock()
        self._stop = threading.Event()  # in-process runs
        self._process = None  # the TrainingProcess of the active run
        self._spare = None  # a warm TrainingProcess waiting for the next run
        self._finished = threading.Event()  # set while idle: the last run and its final event are done
        self._finished.set()
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
        process = self._process
        return process.pid if process is not None else None

    def start(self, dataset: str, config: TrainingConfig, callback: Callback, device: str = "auto",
              start_from: str | None = None) -> str:
        """A new run on `dataset`; with `start_from` (a model's run id) it starts from that model's
        best weights, features and size instead of from scratch."""
        self._ensure_idle()  # checked again under the lock; this answers fast and first
        plan = plan_new_run(self.data_dir, dataset, config, start_from)
        names = [f.name for f in plan.manifest.files]
        train_idx, val_idx = split_by_file(len(names), plan.config.val_fraction, plan.config.seed)
        audio_dir = plan.manifest.audio_dir(self.data_dir)
        with self._lock:
            self._ensure_idle()
            run_id = new_run_id(plan.manifest.name)
            run_dir = run_dir_for(self.data_dir, run_id)
            (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            atomic_write_json(run_dir / "config.json", plan.config.to_dict())
            write_run_record(
                run_dir, run_id=run_id, dataset=plan.manifest.name, status="running", created=now_iso(),
                epochs_done=0, total_epochs=plan.config.epochs, best_val_loss=None, pid=os.getpid(),
                train_files=[names[i] for i in train_idx], val_files=[names[i] for i in val_idx], error=None,
                started_from=start_from or None,
            )
            session = Session(run_id, run_dir, plan.manifest.name, plan.config,
                              [audio_dir / names[i] for i in train_idx], [audio_dir / names[i] for i in val_idx],
                              device, resume=False, start_from=plan.base_dir, after_training=self.after_training,
                              after_cancel=self.after_cancel)
            self._launch(session, callback)
        return run_id

    def resume(self, run_id: str, callback: Callback, epochs: int | None = None, device: str = "auto") -> str:
        self._ensure_idle()
        plan = plan_resume(self.data_dir, run_id, epochs)
        with self._lock:
            self._ensure_idle()
            atomic_write_json(plan.info.run_dir / "config.json", plan.config.to_dict())
            write_run_record(plan.info.run_dir, status="running", total_epochs=plan.config.epochs, pid=os.getpid(),
                             error=None, patience_stop=None)
            self._launch(Session(run_id, plan.info.run_dir, plan.info.dataset, plan.config, plan.train_files,
                                 plan.val_files, device, resume=True, after_training=self.after_training,
                                 after_cancel=self.after_cancel), callback)
        return run_id

    def cancel(self) -> bool:
        """Ask the active run to stop at the next step boundary (it saves a checkpoint). False if idle."""
        if self._active_run is None:
            return False
        self._stop.set()
        process = self._process
        if process is not None:
            process.cancel()
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """True once no run is active and the last one's final event has been delivered."""
        return self._finished.wait(timeout)

    def prewarm(self) -> None:
        """With keep_warm, start the next training process now if none is ready: the
        Train page calls this, so the process has imported torch by the time Train is pressed."""
        if not self._lock.acquire(blocking=False):
            return  # a run is being started right now: it needs no spare, and the caller must not wait
        try:
            if self.keep_warm and self._spare is None and self._active_run is None:
                self._spare = self._new_process()
        finally:
            self._lock.release()

    def close(self) -> None:
        """Let the warm spare go (an active run is left alone: cancel it first)."""
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.retire()

    # -- internals --------------------------------------------------------
    def _ensure_idle(self) -> None:
        if self._active_run is not None:
            raise RunnerBusy(f"A training run ({self._active_run}) is already active; cancel it or wait for it to finish.")

    def _launch(self, session: Session, callback: Callback) -> None:
        self._stop.clear()
        finished = self._finished = threading.Event()  # per run: a late set() never marks the next run done
        self._active_run = session.run_id
        self.last_session = session
        self.epoch_timings = []
        mark_live(session.run_id, True)
        emit = _safely(callback)
        if self.in_process:
            threading.Thread(target=self._run_here, args=(session, emit, finished), name=f"train-{session.run_id}",
                             daemon=True).start()
            return
        self._process = self._take_spare()
        if self.keep_warm:  # the next run's process imports torch while this one trains: a queue moves on at once
            self._spare = self._new_process()
        self._process.train(session, emit, self.epoch_timings.append,
                            lambda done: self._finish(session, done, emit, finished))

    def _warm_imports(self) -> tuple[str, ...]:
        """Modules a new training process imports while it waits: the hook's, so the first step
        does not wait for it."""
        module = getattr(self.after_training, "__module__", None)
        return (module,) if module else ()

    def _new_process(self):
        """A new training process, importing what the after-training hook's module names."""
        from .worker import TrainingProcess  # here: the child runs worker.py as __main__ (runpy warns otherwise)

        return TrainingProcess(self._warm_imports())

    def _take_spare(self):
        spare, self._spare = self._spare, None
        if spare is not None and spare.is_usable():
            return spare
        if spare is not None:
            spare.retire()
        return self._new_process()

    def _run_here(self, session: Session, emit: Callback, finished: threading.Event) -> None:
        """In-process mode: the run on this thread."""
        try:
            done = run_session(session, self._stop, emit, self.epoch_timings.append)
        except BaseException as exc:  # run_session reports its own failures; this is a last resort
            done = TrainingCompleteEvent(outcome="failed", epochs_done=0, total_epochs=session.config.epochs,
                                         best_val_loss=None, checkpoint_path=None, error=describe_failure(exc))
        self._finish(session, done, emit, finished)

    def _finish(self, session: Session, done: TrainingCompleteEvent, emit: Callback, finished: threading.Event) -> None:
        mark_live(session.run_id, False)
        with self._lock:
            self._process = None
            if self.keep_warm and self._spare is None:
                self._spare = self._new_process()
            self._active_run = None  # idle before the last event: a listener may start the next run
        emit(done)
        finished.set()


# ---- what a run needs, checked before it starts (or before it is queued) ----------

IMPORTED_CANNOT_RESUME = ("This model was imported: it holds its weights but not its training state, so it "
                          "cannot be trained further here; start a new run on its dataset instead.")


@dataclass(frozen=True)
class NewRunPlan:
    manifest: object  # the DatasetManifest
    config: TrainingConfig  # validated, with a base model's size when it starts from one
    base_dir: Path | None  # the run folder of the model it starts from


@dataclass(frozen=True)
class ResumePlan:
    info: RunInfo
    config: TrainingConfig
    train_files: list[Path]
    val_files: list[Path]


def plan_new_run(data_dir: Path, dataset: str, config: TrainingConfig, start_from: str | None = None) -> NewRunPlan:
    """Everything a new run needs, or the one sentence that says why it cannot start."""
    config = config.validated()
    base_dir = None
    if start_from:
        base_dir, config = _starting_point(data_dir, start_from, config)
    manifest = load_dataset(data_dir, dataset)
    if manifest.file_count == 0:
        raise DatasetError(f"Dataset {manifest.name!r} has no usable sound files; add some on the Data tab.")
    return NewRunPlan(manifest, config, base_dir)


def plan_resume(data_dir: Path, run_id: str, epochs: int | None = None) -> ResumePlan:
    """Everything resuming `run_id` needs (to `epochs`, else its own target), or why it cannot."""
    info = load_run(data_dir, run_id)
    if is_imported(info.run_dir):
        raise RunError(IMPORTED_CANNOT_RESUME)
    record = read_json(info.run_dir / "run.json")
    if not info.has_checkpoint:
        raise RunError(f"Run {run_id!r} has no checkpoint to resume from; start a new run instead.")
    if is_segment_run(info.run_dir):
        raise RunError(SEGMENT_MODEL_CANNOT_RESUME)
    config = TrainingConfig.from_dict(read_json(info.run_dir / "config.json"))
    if epochs is not None:
        config = config.with_overrides(epochs=epochs)
    if config.epochs <= info.epochs_done:
        raise ConfigError(
            f"Run {run_id!r} has already trained {info.epochs_done} of {config.epochs} epochs; "
            f"raise max epochs above {info.epochs_done} to continue it."
        )
    other_pid = record.get("pid")
    if info.status == "interrupted" and isinstance(other_pid, int) and other_pid != os.getpid() and _pid_alive(other_pid):
        raise RunError(f"Run {run_id!r} is being trained by another process (pid {other_pid}); stop that one first.")
    audio_dir = dataset_dir(data_dir, info.dataset) / "audio"
    train = [audio_dir / n for n in record.get("train_files", []) if (audio_dir / n).is_file()]
    val = [audio_dir / n for n in record.get("val_files", []) if (audio_dir / n).is_file()]
    if not train:
        raise DatasetError(f"The sound files of run {run_id!r} are gone from dataset {info.dataset!r}; it cannot resume.")
    return ResumePlan(info, config, train, val)


def _starting_point(data_dir: Path, model_id: str, config: TrainingConfig) -> tuple[Path, TrainingConfig]:
    """The run folder of the model a new run starts from, and the config with that model's
    size (its weights only fit a model of the same shape)."""
    info = load_run(data_dir, model_id)
    if not info.has_checkpoint:
        raise RunError(f"Model {model_id!r} has no trained weights yet, so a run cannot start from it.")
    if info.status == "running":
        raise RunError(f"Model {model_id!r} is training right now; start from it once it has finished.")
    if is_segment_run(info.run_dir):
        raise RunError(f"Model {model_id!r} is an earlier segment model; a run can only start from a "
                       "model of whole sounds.")
    try:
        base = TrainingConfig.from_dict(read_json(info.run_dir / "config.json"))
    except (OSError, ValueError, TypeError):
        raise RunError(f"The settings of model {model_id!r} are unreadable, so a run cannot start from it.") from None
    return info.run_dir, config.with_overrides(latent_dim=base.latent_dim, local_dim=base.local_dim,
                                               width=base.width, segment_seconds=base.segment_seconds)


def _safely(callback: Callback) -> Callback:
    def emit(event: TrainingEvent) -> None:
        try:
            callback(event)
        except Exception:  # a broken listener must not kill the run
            pass
    return emit
