"""`sda train` when a server runs the data folder's queue, and `sda queue`.

A server that is running trains one run per device; a second model trained by
the CLI on the same CPU or GPU at once would slow both (and fight for memory).
So `sda train` adds its run to the server's queue (the same file the Train tab
uses) and follows it from disk: its place in the queue while it waits, then a
progress line per epoch from the run's progress.json, then the same closing
report as a run trained here. Ctrl-C takes a waiting run out of the queue, or
asks the server to cancel a training one (it keeps its checkpoint).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time

from .cli_progress import progress_line, report_end
from .training.events import TrainingCompleteEvent
from .training.queue import RunQueue, executor_running
from .training.queue_view import build_queue_view, queued_sentence
from .training.runs import RunError, load_run, read_progress

POLL_S = 0.25
RESAY_S = 5.0  # how often a waiting run's estimate is worked out again when the queue has not changed


def requested_by() -> str:
    return f"sda train (pid {os.getpid()})"


def follow_queued(data_dir, entry_id: str, dataset: str, out=None) -> int:
    """Follow a run queued on the server until it ends; the exit code of `sda train`."""
    out = out or sys.stdout
    queue = RunQueue(data_dir)
    interrupted = []
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
    try:
        return _follow(queue, data_dir, entry_id, dataset, out, interrupted)
    finally:
        signal.signal(signal.SIGINT, previous)


def _follow(queue: RunQueue, data_dir, entry_id: str, dataset: str, out, interrupted: list) -> int:
    said, run_id, last_epoch, asked_cancel = None, None, 0, False
    seen, said_at = None, 0.0
    while True:
        version = queue.version()
        state = queue.state()
        entry = state.find(entry_id)
        if entry is None:
            failure = next((f for f in state.failures if f.entry_id == entry_id), None)
            if failure is not None:
                print(f"The server could not start this run: {failure.error}", file=out)
                return 1
            return _report(data_dir, run_id, dataset, out)
        if interrupted and not asked_cancel:
            asked_cancel = True
            if entry.state == "queued":
                try:
                    queue.remove(entry_id)
                    print("\nTaken out of the queue; nothing was trained.", file=out)
                    return 130
                except ValueError:
                    pass  # it started meanwhile: cancel it instead
            queue.request_cancel(entry_id)
            print("\nAsking the server to stop at the next step and save a checkpoint...", file=out, flush=True)
        if entry.state == "queued":
            if version == seen and time.monotonic() - said_at < RESAY_S:
                time.sleep(POLL_S)
                continue  # the estimate reads every run's history: not four times a second
            seen, said_at = version, time.monotonic()
            sentence = queued_sentence(build_queue_view(data_dir, state, 1), entry_id)
            if sentence and sentence != said:
                said = sentence
                print(f"{sentence} (the server on this data folder runs the queue)", file=out, flush=True)
        else:
            if entry.run_id and run_id is None:
                run_id = entry.run_id
                print(f"Training run {run_id} on {entry.device or 'the server'} (queued on the server).", file=out,
                      flush=True)
            if run_id:
                last_epoch = _print_progress(data_dir, run_id, last_epoch, out)
        time.sleep(POLL_S)


def _print_progress(data_dir, run_id: str, last_epoch: int, out) -> int:
    try:
        latest = read_progress(load_run(data_dir, run_id).run_dir)
    except RunError:
        return last_epoch
    if latest is None or latest.epoch == last_epoch:
        return last_epoch
    print(progress_line(latest.epoch, latest.total_epochs, 1, 1, latest), file=out, flush=True)
    return latest.epoch


def _report(data_dir, run_id: str | None, dataset: str, out) -> int:
    """The run left the queue: read how it ended from its record."""
    if run_id is None:
        print("The run was taken out of the queue before it started.", file=out)
        return 1
    try:
        info = load_run(data_dir, run_id)
    except RunError as exc:
        print(str(exc), file=out)
        return 1
    latest = info.run_dir / "checkpoints" / "latest.pt"
    outcome = info.status if info.status in ("completed", "stopped", "cancelled", "failed") else "failed"
    event = TrainingCompleteEvent(outcome=outcome, epochs_done=info.epochs_done, total_epochs=info.total_epochs,
                                  best_val_loss=info.best_val_loss,
                                  checkpoint_path=str(latest) if latest.exists() else None,
                                  error=info.error or ("the server stopped during the run" if outcome != info.status
                                                       else None),
                                  best_epoch=info.best_epoch, patience=info.patience)
    return report_end(event, data_dir, dataset, out)


def print_queue(data_dir, as_json: bool, out=None) -> int:
    """`sda queue`: what trains and what waits on this data folder."""
    out = out or sys.stdout
    state = RunQueue(data_dir).state()
    view = build_queue_view(data_dir, state, 1)
    serving = executor_running(data_dir)
    if as_json:
        rows = [{"entry_id": r.entry_id, "state": r.state, "position": r.position, "dataset": r.dataset,
                 "preset": r.preset, "requested_by": r.requested_by, "device": r.device, "run_id": r.run_id,
                 "epochs_done": r.epochs_done, "total_epochs": r.total_epochs, "when": r.when}
                for r in view.running + view.waiting]
        failures = [{"dataset": f.dataset, "requested_by": f.requested_by, "error": f.error} for f in view.failures]
        print(json.dumps({"server_running": serving, "entries": rows, "failures": failures}, indent=1), file=out)
        return 0
    if not (view.running or view.waiting):
        print("Nothing is training or queued." + ("" if serving else " (No server is running on this data folder.)"),
              file=out)
    for row in view.running:
        print(f"now  {row.dataset} · {row.preset}, {row.total_epochs} epochs · epoch {row.epochs_done}/{row.total_epochs} · {row.when}"
              f" · on {row.device} · for {row.requested_by}", file=out)
    for row in view.waiting:
        print(f"{row.ordinal:<4} {row.dataset} · {row.preset}, {row.total_epochs} epochs · {row.when} · for {row.requested_by}", file=out)
    for failure in view.failures:
        print(f"could not start: {failure.dataset} (for {failure.requested_by}): {failure.error}", file=out)
    if (view.running or view.waiting) and not serving:
        print("No server is running on this data folder: the queue waits until `sda serve` starts.", file=out)
    return 0
