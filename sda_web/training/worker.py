"""Training in a child process: its own interpreter, so its own GIL.

Why: in the web server a training thread shared the GIL with the event loop.
With 200 viewers the loop's Python work held the GIL whenever a torch op
handed it over, and training ran at 0.8-0.9 of its speed with no viewers
(bench/live_load.py --compare). A child process also keeps an out-of-memory
kill of training from taking the server (and every open page) down with it.

A TrainingProcess starts `python -m sda_web.training.worker` at once; the
child imports torch and the engine, then waits for its Session. So a process
started ahead of time (the runner's warm spare) takes a run without the
seconds torch takes to import. Its owner thread spawns the child, hands it
the run, and relays what it reports until it exits. Two one-way pipes carry
pickles:

    parent -> child  (control): the Session, then "cancel" (EOF also cancels)
    child -> parent  (events):  ("event", TrainingEvent) | ("timing", dict)
                                | ("done", TrainingCompleteEvent)

The child dies with its parent: on Linux through PR_SET_PDEATHSIG, which is
tied to the owner thread, and that thread lives exactly as long as the child;
elsewhere the control pipe's EOF stops the run at the next step. A child that
dies without its final report (killed, out of memory) ends the run as failed,
recorded in run.json, with its last checkpoint kept for a resume.
"""
from __future__ import annotations

import importlib
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .events import EpochMetrics, TrainingCompleteEvent, TrainingEvent
from .runs import now_iso, write_run_record
from .session import Session, run_session

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds sda_web/


@dataclass
class _Job:
    session: Session
    emit: Callable[[TrainingEvent], None]
    on_timing: Callable[[dict], None]
    on_done: Callable[[TrainingCompleteEvent], None]


class TrainingProcess:
    """One training process (started at once) and the thread that owns it; it trains one run."""

    def __init__(self, warm_imports: tuple[str, ...] = ()):
        self._warm_imports = tuple(warm_imports)  # modules the child imports before its run arrives
        self._jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=1)
        self._lock = threading.Lock()
        self._control = None  # the write end of the control pipe, once the run is handed over
        self._cancelled = False
        self._spawned = threading.Event()
        self._process: subprocess.Popen | None = None
        self._spawn_error: str | None = None
        threading.Thread(target=self._own, name="training-process", daemon=True).start()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def is_usable(self) -> bool:
        """Can it still take a run: started, and not exited while it waited."""
        self._spawned.wait(30)
        return self._process is not None and self._process.poll() is None and not _just_died(self._process.pid)

    def train(self, session: Session, emit, on_timing, on_done) -> None:
        """Hand over the run; `on_done(final_event)` is called on the owner thread when the child has exited."""
        self._jobs.put_nowait(_Job(session, emit, on_timing, on_done))

    def retire(self) -> None:
        """Not needed after all: the child, which holds nothing yet, is stopped at once."""
        self._jobs.put_nowait(None)

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._control is not None:
                _send_quietly(self._control, "cancel")

    # -- the owner thread ---------------------------------------------------
    def _own(self) -> None:
        control_r, control_w = os.pipe()
        events_r, events_w = os.pipe()
        env = {**os.environ,
               "PYTHONPATH": os.pathsep.join(filter(None, [str(_PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))}
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "sda_web.training.worker", str(control_r), str(events_w), str(os.getpid()),
                 *self._warm_imports],
                pass_fds=(control_r, events_w), env=env, stdin=subprocess.DEVNULL,
                start_new_session=True,  # a terminal's Ctrl-C reaches the parent only; the parent decides
            )
        except OSError as exc:
            self._spawn_error = f"The training process could not start ({exc.strerror or exc})."
        finally:
            os.close(control_r)
            os.close(events_w)
            self._spawned.set()
        with os.fdopen(control_w, "wb") as control, open(events_r, "rb") as events:
            job = self._jobs.get()
            if job is None or self._process is None:
                if self._process is not None:
                    self._process.kill()  # a spare may still be importing torch: no need to let it finish
                    self._process.wait()
                if job is not None:
                    job.on_done(_record_death(job.session, self._spawn_error or "", 0))
                return
            try:
                done = self._relay(job, control, events)
            except Exception as exc:  # the relay itself broke: the child must not train on unwatched
                self._process.kill()
                done = _record_death(job.session, f"Training lost touch with its process ({type(exc).__name__}).", 0)
            finally:
                with self._lock:
                    self._control = None
            job.on_done(done)

    def _relay(self, job: _Job, control, events) -> TrainingCompleteEvent:
        # Not under the lock: a large Session can fill the pipe until a busy child reads it,
        # and cancel() (called from the web's event loop) must never wait on that.
        sent = _send_quietly(control, job.session)
        with self._lock:
            self._control = control
            if self._cancelled:
                _send_quietly(control, "cancel")
        last_epoch, done = 0, None
        while sent:
            try:
                kind, payload = pickle.load(events)
            except (EOFError, OSError, pickle.UnpicklingError):
                break
            if kind == "event":
                if isinstance(payload, EpochMetrics):
                    last_epoch = payload.epoch
                job.emit(payload)
            elif kind == "timing":
                job.on_timing(payload)
            elif kind == "done":
                done = payload
        with self._lock:
            self._control = None
            control.close()
        code = self._process.wait()
        return done or _record_death(job.session, _death_message(code), last_epoch)


def _just_died(pid: int) -> bool:
    """A child killed a moment ago shows as a zombie in /proc before waitpid can reap it (measured:
    poll() said "running" right after the kill), and must not be handed a run."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return False  # no /proc (macOS): poll() alone decides


def _record_death(session: Session, message: str, last_epoch: int) -> TrainingCompleteEvent:
    """The child is gone without its final report: record the failure it could not."""
    run_dir = session.run_dir
    try:
        record = write_run_record(run_dir, status="failed", error=message, updated=now_iso())
    except (OSError, ValueError):
        record = {}
    latest = run_dir / "checkpoints" / "latest.pt"
    return TrainingCompleteEvent(outcome="failed", epochs_done=last_epoch, total_epochs=session.config.epochs,
                                 best_val_loss=record.get("best_val_loss"),
                                 checkpoint_path=str(latest) if latest.exists() else None, error=message)


def _send_quietly(stream, message) -> bool:
    try:
        pickle.dump(message, stream)
        stream.flush()
        return True
    except (OSError, ValueError):  # the child is gone (or the pipe closed): its exit tells the rest
        return False


def _death_message(code: int) -> str:
    if code < 0 and -code == signal.SIGKILL:
        return ("The training process was killed (often because the machine ran out of memory); "
                "resume it from its last checkpoint, perhaps with a smaller batch size.")
    if code < 0:
        return f"The training process was stopped by signal {signal.Signals(-code).name}; resume it from its last checkpoint."
    return f"The training process stopped unexpectedly (exit code {code}); resume it from its last checkpoint."


# ---- the child ----------------------------------------------------------------------

def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)


def _watch_control(control, stop: threading.Event) -> None:
    """Set `stop` on "cancel" or when the parent closes the pipe (it is gone or giving up)."""
    while True:
        try:
            message = pickle.load(control)
        except (EOFError, OSError, pickle.UnpicklingError):
            stop.set()
            return
        if message == "cancel":
            stop.set()


def _warm_up(modules: tuple[str, ...] = ()) -> None:
    """Import what a run needs before the run arrives: torch takes seconds, and so
    does torch._dynamo, which the first optimizer construction imports (measured
    3.4 s of a warm process's 3.7 s to its first step). One tiny step of a conv
    layer also initialises the CPU kernels."""
    import torch

    from .. import checkpoints  # noqa: F401
    from . import data, previews, run_state, trainer  # noqa: F401

    for name in modules:  # the after_training hook's module, and what it says it needs
        getattr(importlib.import_module(name), "warm_up", lambda: None)()
    layer = torch.nn.Conv1d(2, 2, 3, padding=1)
    optimizer = torch.optim.AdamW(layer.parameters())
    layer(torch.zeros(1, 2, 8)).square().mean().backward()
    optimizer.step()


def child_main(control_fd: int, events_fd: int, parent_pid: int, warm_imports: tuple[str, ...] = ()) -> int:
    _die_with_parent(parent_pid)
    control = os.fdopen(control_fd, "rb")
    events = os.fdopen(events_fd, "wb")
    _warm_up(warm_imports)
    try:
        session = pickle.load(control)
    except (EOFError, OSError, pickle.UnpicklingError):
        return 0  # retired before it got a run
    stop = threading.Event()
    threading.Thread(target=_watch_control, args=(control, stop), name="control", daemon=True).start()

    def report(kind: str, payload) -> None:
        if not _send_quietly(events, (kind, payload)):
            stop.set()  # nobody is listening any more: stop at the next step, checkpointed

    done = run_session(session, stop, lambda event: report("event", event), lambda timing: report("timing", timing))
    report("done", done)
    events.close()
    return 0


if __name__ == "__main__":
    sys.exit(child_main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), tuple(sys.argv[4:])))
