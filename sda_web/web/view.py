"""What the Train tab shows, as plain data: the run on screen and its state.

The hub keeps one RunView up to date from the runner's events; full pages and
pushed fragments are both rendered from it, so a reload and a live client
always agree.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..training.events import EpochMetrics, PreviewEvent, StepProgress
from ..training.memorisation import MemorisationSign, memorisation_sign
from ..training.runs import RunError, latest_resumable_run, list_previews, list_runs, load_history

ACTIVE = ("starting", "running")
OUTCOMES = ("completed", "stopped", "cancelled", "failed", "interrupted")


@dataclass(frozen=True)
class ResumeOffer:
    """The run that Resume Training would continue."""

    run_id: str
    epochs_done: int
    total_epochs: int
    status: str


@dataclass
class RunView:
    token: int | None = None  # which runner callback feeds this view (None: read from disk)
    run_id: str | None = None
    dataset: str | None = None
    status: str = "idle"  # idle | starting | running | completed | stopped | cancelled | failed | interrupted
    total_epochs: int = 0
    start_epoch: int = 0
    device: str = ""
    history: list[EpochMetrics] = field(default_factory=list)
    previews: list[PreviewEvent] = field(default_factory=list)
    progress: StepProgress | None = None
    error: str | None = None
    best_val_loss: float | None = None
    cancelling: bool = False
    resume: ResumeOffer | None = None
    preview_every: int | None = None
    patience: int | None = None  # with status "stopped": the epochs it waited for a new best
    started_from: str | None = None  # the model this run started from

    def memorisation(self) -> MemorisationSign | None:
        return memorisation_sign(self.history, self.total_epochs or (self.latest.total_epochs if self.latest else 0))

    @property
    def running(self) -> bool:
        return self.status in ACTIVE

    @property
    def finished(self) -> bool:
        return self.status in OUTCOMES

    @property
    def latest(self) -> EpochMetrics | None:
        return self.history[-1] if self.history else None

    @property
    def epochs_done(self) -> int:
        return self.history[-1].epoch if self.history else self.start_epoch

    def best(self) -> tuple[int, float] | None:
        """(epoch, loss) of the lowest validation loss (train loss without validation)."""
        scored = [(m.val_loss if m.val_loss is not None else m.train_loss, m.epoch) for m in self.history]
        scored = [(loss, epoch) for loss, epoch in scored if loss is not None and loss == loss]
        if not scored:
            return None
        loss, epoch = min(scored)
        return epoch, loss


def resume_offer(data_dir: Path, dataset: str | None) -> ResumeOffer | None:
    if not dataset:
        return None
    info = latest_resumable_run(data_dir, dataset)
    if info is None or info.status == "running":
        return None
    return ResumeOffer(info.run_id, info.epochs_done, info.total_epochs, info.status)


def latest_run_view(data_dir: Path, dataset: str | None) -> RunView:
    """The dataset's newest run as it is on disk (blocking file reads: call in a thread)."""
    view = RunView(dataset=dataset, resume=resume_offer(data_dir, dataset))
    if not dataset:
        return view
    runs = list_runs(data_dir, dataset)
    if not runs:
        return view
    info = runs[0]
    try:
        history = load_history(info.run_dir)
    except (OSError, ValueError, TypeError, RunError):
        history = []
    view.run_id = info.run_id
    view.status = info.status if info.status in OUTCOMES else "interrupted"
    view.total_epochs = info.total_epochs
    view.history = history
    view.previews = list_previews(info.run_dir)
    view.error = info.error
    view.best_val_loss = info.best_val_loss
    view.start_epoch = info.epochs_done
    view.patience = info.patience
    view.started_from = info.started_from
    return view
