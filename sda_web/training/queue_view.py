"""The queue as people read it: who is training, who waits, when each starts (read from disk:
call in a thread). The Train tab's panel and `sda queue` both show this."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..datasets import DatasetError, load_dataset
from .queue import QueueEntry, QueueFailure, QueueState, ordinal
from .queue_estimates import EpochRates, about, epoch_rates, run_seconds, start_estimates
from .runs import RunInfo, is_segment_run, list_runs, read_progress


@dataclass(frozen=True)
class QueueRow:
    entry_id: str
    dataset: str
    preset: str
    requested_by: str
    state: str  # running | queued
    position: int | None = None  # 1 for the next to start
    device: str | None = None
    run_id: str | None = None
    epochs_done: int = 0
    total_epochs: int = 0
    when: str = ""  # "about 3 min left" / "starts after demo (about 4 min)"

    @property
    def ordinal(self) -> str:
        return ordinal(self.position) if self.position else ""


@dataclass(frozen=True)
class ResumableRun:
    run_id: str
    dataset: str
    epochs_done: int
    total_epochs: int


@dataclass
class QueueView:
    running: list[QueueRow] = field(default_factory=list)
    waiting: list[QueueRow] = field(default_factory=list)
    failures: list[QueueFailure] = field(default_factory=list)
    ended: list = field(default_factory=list)  # EndedRun, newest first
    interrupted: list[ResumableRun] = field(default_factory=list)
    devices: int = 1

    @property
    def empty(self) -> bool:
        return not (self.running or self.waiting or self.failures or self.ended or self.interrupted)


def build_queue_view(data_dir: Path, state: QueueState, devices: int, ended=(), live=None) -> QueueView:
    """`live`: the run the Train tab shows (a RunView), whose latest epoch is fresher than the disk's."""
    runs = list_runs(data_dir)  # read once: estimates, progress and the interrupted runs all use it
    by_id = {info.run_id: info for info in runs}
    rates = epoch_rates(runs)
    remaining: dict[str, float | None] = {}
    running = []
    for entry in state.running:
        done, total, left = _progress(by_id.get(entry.run_id), entry, live)
        remaining[entry.entry_id] = left
        when = f"{about(left)} left" if left is not None else "starting"
        running.append(QueueRow(entry.entry_id, entry.dataset, entry.preset, entry.requested_by, entry.state,
                                device=entry.device, run_id=entry.run_id, epochs_done=done, total_epochs=total,
                                when=when))
    durations = {e.entry_id: _duration(data_dir, e, rates, by_id) for e in state.waiting}
    starts = start_estimates(state, devices, remaining, durations)
    waiting = []
    ahead = [e.dataset for e in state.running]
    for position, entry in enumerate(state.waiting, start=1):
        estimate = about(starts.get(entry.entry_id))
        after = f"starts after {ahead[-1]}" if ahead else "starts next"
        when = f"{after} ({estimate})" if estimate else after
        waiting.append(QueueRow(entry.entry_id, entry.dataset, entry.preset, entry.requested_by, entry.state,
                                position=position, run_id=entry.run_id, total_epochs=entry.total_epochs or 0,
                                when=when))
        ahead.append(entry.dataset)
    return QueueView(running, waiting, list(reversed(state.failures)), list(ended), _interrupted(runs, state), devices)


def queued_sentence(view: QueueView, entry_id: str) -> str | None:
    """'Queued, 2nd, starts after demo (about 4 min).' for the run just queued."""
    row = next((r for r in view.waiting if r.entry_id == entry_id), None)
    if row is None:
        return None
    return f"Queued, {row.ordinal}, {row.when}."


def _progress(info: RunInfo | None, entry: QueueEntry, live) -> tuple[int, int, float | None]:
    """(epochs done, total, seconds left) of a running entry: from the live view when it shows
    this run, else from the progress its trainer writes each epoch."""
    if live is not None and entry.run_id and live.run_id == entry.run_id and live.latest is not None:
        latest = live.latest
    else:
        latest = read_progress(info.run_dir) if info is not None else None
    if latest is None:
        return 0, entry.total_epochs or 0, None
    return latest.epoch, latest.total_epochs, latest.eta_s


def _duration(data_dir: Path, entry: QueueEntry, rates: EpochRates, by_id: dict[str, RunInfo]) -> float | None:
    try:
        files = load_dataset(data_dir, entry.dataset).file_count
    except DatasetError:
        return None
    done = 0
    if entry.kind == "resume":
        resumed = by_id.get(entry.run_id)
        if resumed is None:
            return None
        done = resumed.epochs_done
    return run_seconds(entry, rates.seconds_per_epoch(entry.dataset, files), done)


def _interrupted(runs: list[RunInfo], state: QueueState, limit: int = 3) -> list[ResumableRun]:
    """Runs cut off by a restart (or a crash) that can resume and are not queued already."""
    queued = {e.run_id for e in state.entries if e.run_id}
    found = []
    for info in runs:
        if info.status == "interrupted" and info.has_checkpoint and info.run_id not in queued \
                and not is_segment_run(info.run_dir) and info.epochs_done < info.total_epochs:
            found.append(ResumableRun(info.run_id, info.dataset, info.epochs_done, info.total_epochs))
            if len(found) == limit:
                break
    return found
