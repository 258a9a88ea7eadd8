"""Is the model still getting better, or has it started to memorise its files?

A pure function of the epoch history, so the Train tab, a reload, the CLI and a
resumed run all give the same answer from the same numbers.

The rule (on held-out loss, never on training loss alone, which falls for ever):

* Both curves are smoothed by a running median over `w = max(5, total/40)`
  epochs. A median, not a mean: with one or two held-out files, single epochs
  jump by 20-30% (measured on 5-file demo runs), and one lucky dip must neither
  set the best nor a false alarm.
* Memorising began at the epoch of the lowest smoothed held-out loss, `b`.
* It is said once the smoothed held-out loss has not come back for
  `3w` epochs and now sits more than 3% above its lowest, while the smoothed
  training loss has fallen by more than 5% since `b` (the model still learns
  something, and it is not the held-out files).

Measured (docs/DESIGN-NOTES.md, "Memorisation"): it fires on a 5-file demo run
trained 4x its preset and on none of the default runs of the demo set (50
files), Millo_MultiLayered2 and ForzeeStereo.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Sequence

from .events import EpochMetrics

RISE = 0.03  # smoothed held-out loss this far above its lowest
TRAIN_DROP = 0.05  # while the smoothed training loss fell this much since then
WAIT_WINDOWS = 3  # for this many smoothing windows


@dataclass(frozen=True)
class MemorisationSign:
    began_epoch: int  # where the smoothed held-out loss was lowest
    best_epoch: int  # the single epoch with the lowest held-out loss (the best weights)

    def sentence(self) -> str:
        return (f"The model has started to memorise its training files: held-out loss has not improved since "
                f"about epoch {self.began_epoch}, while training loss kept falling; the best weights are "
                f"from epoch {self.best_epoch}.")


def smoothing_window(total_epochs: int) -> int:
    return max(5, int(total_epochs) // 40)


def running_median(values: Sequence[float], window: int) -> list[float]:
    return [statistics.median(values[max(0, i - window + 1):i + 1]) for i in range(len(values))]


def memorisation_sign(history: Sequence[EpochMetrics], total_epochs: int) -> MemorisationSign | None:
    """The sign that training has turned to memorising, or None (still improving, too early to
    say, or no held-out files to tell by)."""
    rows = [m for m in history if m.val_loss is not None and m.val_loss == m.val_loss]
    window = smoothing_window(total_epochs)
    if len(rows) < (WAIT_WINDOWS + 1) * window:
        return None
    val = running_median([m.val_loss for m in rows], window)
    train = running_median([m.train_loss for m in rows], window)
    low = min(range(len(val)), key=val.__getitem__)
    now = len(rows) - 1
    waited = rows[now].epoch - rows[low].epoch >= WAIT_WINDOWS * window
    if waited and val[now] > val[low] * (1 + RISE) and train[now] < train[low] * (1 - TRAIN_DROP):
        best = min(rows, key=lambda m: m.val_loss)
        return MemorisationSign(began_epoch=rows[low].epoch, best_epoch=best.epoch)
    return None
