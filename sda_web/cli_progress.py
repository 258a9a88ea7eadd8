"""Terminal view of a training run: a live progress line, preview lines, Ctrl-C.

The runner's callback only puts events on a queue; this loop, on the main
thread, draws them. Ctrl-C is turned into a cancel request by a signal handler
(never a KeyboardInterrupt in the middle of drawing): the runner stops at the
next step boundary and saves a checkpoint, and the loop keeps draining until
the run's final event arrives, so the process never exits under a live run.
"""
from __future__ import annotations

import queue
import shlex
import signal
import sys

from .training.events import EpochMetrics, PreviewEvent, RunStarted, StepProgress, TrainingCompleteEvent
from .training.memorisation import memorisation_sign

BAR_WIDTH = 24


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_line(epoch: int, total: int, step: int, steps: int, last: EpochMetrics | None) -> str:
    done = ((epoch - 1) + (step / steps if steps else 0)) / max(total, 1)
    filled = int(round(done * BAR_WIDTH))
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    parts = [f"Epoch {epoch}/{total} [{bar}] step {step}/{steps}"]
    if last is not None:
        parts.append(f"train {last.train_loss:.4f}")
        if last.val_loss is not None:
            parts.append(f"val {last.val_loss:.4f}")
        parts.append(f"ETA {format_duration(last.eta_s)}")
    return " · ".join(parts)


def follow_run(runner, events: "queue.Queue", data_dir, dataset: str, out=None) -> int:
    out = out or sys.stdout
    previous_handler = signal.signal(signal.SIGINT, _cancel_on_interrupt(runner, out))
    try:
        return _draw_until_finished(runner, events, data_dir, dataset, out)
    finally:
        signal.signal(signal.SIGINT, previous_handler)


def _cancel_on_interrupt(runner, out):
    def handler(signum, frame) -> None:
        if runner.cancel():
            print("\nStopping at the next step and saving a checkpoint...", file=out, flush=True)

    return handler


def _draw_until_finished(runner, events: "queue.Queue", data_dir, dataset: str, out) -> int:
    live = out.isatty()
    last: EpochMetrics | None = None
    total, steps = 0, 0
    history: list[EpochMetrics] = []
    warned = False  # the memorisation line is printed once, when it first holds
    while True:
        try:
            event = events.get(timeout=0.2)
        except queue.Empty:
            if runner.wait(0) and events.empty():  # the run is gone without a final event
                print("\nTraining stopped without a final report; check the run folder.", file=out)
                return 1
            continue
        if isinstance(event, RunStarted):
            total = event.total_epochs
            print(f"{event.train_files} training and {event.val_files} validation files on {event.device}.", file=out)
        elif isinstance(event, StepProgress):
            steps = event.steps_per_epoch
            if live:
                print("\r\033[K" + progress_line(event.epoch, total, event.step, steps, last), end="", file=out, flush=True)
        elif isinstance(event, EpochMetrics):
            last = event
            history = [m for m in history if m.epoch < event.epoch] + [event]
            if not live:
                print(progress_line(event.epoch, event.total_epochs, steps, steps, event), file=out, flush=True)
            sign = None if warned else memorisation_sign(history, event.total_epochs)
            if sign is not None:
                warned = True
                print(("\r\033[K" if live else "") + f"Epoch {event.epoch}: {sign.sentence()}", file=out, flush=True)
        elif isinstance(event, PreviewEvent):
            prefix = "\r\033[K" if live else ""
            val = f"val {last.val_loss:.4f} · " if last and last.val_loss is not None else ""
            print(f"{prefix}Preview epoch {event.epoch}: {val}{event.audio_path}", file=out, flush=True)
        elif isinstance(event, TrainingCompleteEvent):
            if live:
                print("\r\033[K", end="", file=out)
            runner.wait(timeout=10)  # let the relay end before the process does
            return report_end(event, data_dir, dataset, out)


def report_end(event: TrainingCompleteEvent, data_dir, dataset: str, out) -> int:
    best = f", best validation loss {event.best_val_loss:.4f}" if event.best_val_loss is not None else ""
    if event.outcome == "completed":
        print(f"Finished {event.epochs_done}/{event.total_epochs} epochs{best}. Checkpoint: {event.checkpoint_path}", file=out)
        return 0
    resume = f"sda train {shlex.quote(dataset)} --resume --data-dir {shlex.quote(str(data_dir))}"
    if event.outcome == "stopped":
        print(f"Stopped at epoch {event.epochs_done}/{event.total_epochs}: no better for {event.patience} epochs; "
              f"the best weights (epoch {event.best_epoch}{best}) are what the model uses. "
              f"To train further anyway:\n  {resume}", file=out)
        return 0
    if event.outcome == "cancelled":
        print(f"Stopped after epoch {event.epochs_done}/{event.total_epochs}{best}. "
              f"Checkpoint saved; resume with:\n  {resume}", file=out)
        return 130
    print(f"Training failed: {event.error}", file=out)
    if event.checkpoint_path:
        print(f"The last good checkpoint is kept; resume with:\n  {resume}", file=out)
    return 1
