"""Training in a child process: its own interpreter, so its own GIL.

Why: in the web server a training thread shared the GIL with the event loop.
With 200 viewers the loop's Python work held the GIL whenever a torch op
handed it over, and training ran at 0.7-0.8 of its speed with no viewers. A
child process also keeps an out-of-memory kill of training from taking the
server (and every open page) down with it.

The parent side, `run_in_child`, runs on the runner's relay thread: it starts
`python -m sda_web.training.worker`, sends the Session, then relays what the
child reports until the child exits. Two one-way pipes carry pickles:

    parent -> child  (control): the Session, then "cancel" (EOF also cancels)
    child -> parent  (events):  ("event", TrainingEvent) | ("timing", dict)
                                | ("done", TrainingCompleteEvent)

The child dies with its parent: on Linux through PR_SET_PDEATHSIG (tied to
the relay thread that started it, which lives until the child has exited);
elsewhere the control pipe's EOF stops the run at the next step. A child that
dies without its final report (killed, out of memory) ends the run as failed,
recorded in run.json, with its last checkpoint kept for a resume.
"""
from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable

from .events import EpochMetrics, TrainingCompleteEvent, TrainingEvent
from .runs import now_iso, write_run_record
from .session import Session

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds sda_web/


class ChildRun:
    """The parent's handle on one run in a child process."""

    def __init__(self, session: Session):
        self.session = session
        self._lock = threading.Lock()
        self._control = None  # the write end of the control pipe, once the child is up
        self._cancelled = False
        self.pid: int | None = None

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._control is not None:
                _send_quietly(self._control, "cancel")

    def run(self, emit: Callable[[TrainingEvent], None], on_timing: Callable[[dict], None]) -> TrainingCompleteEvent:
        """Start the child, relay its reports until it exits; returns the run's final event."""
        control_r, control_w = os.pipe()
        events_r, events_w = os.pipe()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))}
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "sda_web.training.worker", str(control_r), str(events_w), str(os.getpid())],
                pass_fds=(control_r, events_w), env=env, stdin=subprocess.DEVNULL,
            )
        except OSError as exc:
            for fd in (control_r, control_w, events_r, events_w):
                os.close(fd)
            return self._failed(f"The training process could not start ({exc.strerror or exc}).", 0)
        os.close(control_r)
        os.close(events_w)
        self.pid = process.pid
        control = os.fdopen(control_w, "wb")
        last_epoch, done = 0, None
        with open(events_r, "rb") as events:
            with self._lock:
                sent = _send_quietly(control, self.session)
                self._control = control
                if self._cancelled:
                    _send_quietly(control, "cancel")
            while sent:
                try:
                    kind, payload = pickle.load(events)
                except (EOFError, OSError, pickle.UnpicklingError):
                    break
                if kind == "event":
                    if isinstance(payload, EpochMetrics):
                        last_epoch = payload.epoch
                    emit(payload)
                elif kind == "timing":
                    on_timing(payload)
                elif kind == "done":
                    done = payload
        with self._lock:
            self._control = None
            control.close()
        code = process.wait()
        return done or self._failed(_death_message(code), last_epoch)

    def _failed(self, message: str, last_epoch: int) -> TrainingCompleteEvent:
        """The child is gone without its final report: record the failure it could not."""
        run_dir = self.session.run_dir
        try:
            record = write_run_record(run_dir, status="failed", error=message, updated=now_iso())
        except (OSError, ValueError):
            record = {}
        best = record.get("best_val_loss")
        latest = run_dir / "checkpoints" / "latest.pt"
        return TrainingCompleteEvent(outcome="failed", epochs_done=last_epoch, total_epochs=self.session.config.epochs,
                                     best_val_loss=best, checkpoint_path=str(latest) if latest.exists() else None,
                                     error=message)


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


def child_main(control_fd: int, events_fd: int, parent_pid: int) -> int:
    from .session import run_session

    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole terminal group; the parent decides
    control = os.fdopen(control_fd, "rb")
    events = os.fdopen(events_fd, "wb")
    try:
        session = pickle.load(control)
    except (EOFError, OSError, pickle.UnpicklingError):
        return 1
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
    sys.exit(child_main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
