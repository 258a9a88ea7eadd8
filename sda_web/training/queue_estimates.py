"""When will a queued run start? Estimates from how fast this machine trained before.

An epoch's time grows with the number of files trained on; the newest run that
recorded its timing gives seconds per epoch per file (its own dataset's runs
first, any run otherwise). The queue is then played forward: each waiting run
takes the device that frees up first. Runs that stop early (patience) only make
the estimate pessimistic, which is the right way round for "about 4 min".
"""
from __future__ import annotations

from dataclasses import dataclass

from ..storage import read_json
from .queue import QueueEntry, QueueState
from .runs import RunInfo, load_history

_MAX_RUNS_LOOKED_AT = 12


@dataclass(frozen=True)
class EpochRates:
    """Seconds per epoch per training file, of the newest measured run of each dataset."""

    by_dataset: dict[str, float]
    newest: float | None  # of any dataset

    def seconds_per_epoch(self, dataset: str, file_count: int) -> float | None:
        """This machine's recent epoch time for `file_count` files of `dataset` (None: never measured)."""
        rate = self.by_dataset.get(dataset, self.newest)
        return None if rate is None else rate * max(1, file_count)


def epoch_rates(runs: list[RunInfo]) -> EpochRates:
    """From `runs`, newest first (list_runs), the first few that recorded their timing."""
    by_dataset: dict[str, float] = {}
    newest = None
    for info in runs[:_MAX_RUNS_LOOKED_AT]:
        try:
            history = load_history(info.run_dir)
            files = len(read_json(info.run_dir / "run.json").get("train_files", []))
        except (OSError, ValueError, TypeError, AttributeError):
            continue
        if not history or files <= 0 or not history[-1].elapsed_s:
            continue
        rate = history[-1].elapsed_s / max(1, history[-1].epoch - history[0].epoch + 1) / files
        by_dataset.setdefault(info.dataset, rate)
        newest = rate if newest is None else newest
    return EpochRates(by_dataset, newest)


def run_seconds(entry: QueueEntry, epoch_seconds: float | None, epochs_done: int = 0) -> float | None:
    """How long a queued run will train (None: unknown)."""
    total = entry.total_epochs
    if epoch_seconds is None or not total:
        return None
    return max(0, total - epochs_done) * epoch_seconds


def start_estimates(state: QueueState, devices: int, remaining: dict[str, float | None],
                    durations: dict[str, float | None]) -> dict[str, float | None]:
    """Seconds from now until each waiting entry starts.

    `remaining`: seconds left of each running entry; `durations`: each waiting
    entry's training time. A device whose free time is unknown (None) takes no more."""
    free: list[float | None] = [remaining.get(e.entry_id) for e in state.running]
    free += [0.0] * max(0, devices - len(free))
    starts: dict[str, float | None] = {}
    for entry in state.waiting:
        known = [i for i, t in enumerate(free) if t is not None]
        if not known:
            starts[entry.entry_id] = None
            continue
        slot = min(known, key=lambda i: free[i])  # the device that frees up first
        start = starts[entry.entry_id] = free[slot]
        duration = durations.get(entry.entry_id)
        free[slot] = None if duration is None else start + duration
    return starts


def about(seconds: float | None) -> str:
    """'about 4 min' for a musician; '' when unknown."""
    if seconds is None:
        return ""
    if seconds < 60:
        return "in under a minute"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"about {minutes} min"
    return f"about {seconds / 3600:.1f} h"
