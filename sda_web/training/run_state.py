"""What one run holds while it trains: its data, model and optimiser, its best so far, and how it
writes checkpoints and previews. `session._train` drives it, one epoch at a time.

Imports torch: only the training process loads this module.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

from ..audio.features import checkpoint_spec, default_spec
from ..model import SoundShape
from .. import checkpoints as ckpt
from ..model.lengths import head_frames
from ..model.sound_vae import ATTRIBUTES
from ..model.stats import FeatureStats
from ..storage import atomic_write_json
from .data import SoundBank, compute_log_features, feature_stats
from .devices import resolve_device, torch_threads
from .events import EpochMetrics, PreviewEvent, RunStarted, StepProgress
from . import previews  # called through the module: a test patches previews.write_previews
from .runs import list_previews, now_iso, preview_paths, save_history, write_run_record
from .trainer import EpochResult, Trainer

STEP_EVENT_INTERVAL_S = 0.2  # at most ~5 step events a second: smooth enough for a bar, cheap for 200 viewers


class RunState:
    """Prepared from a Session (new, resumed, or started from another model's weights); `outcome`
    (session._Outcome) is kept up to date as epochs end and checkpoints are written."""

    def __init__(self, session, outcome, should_stop: Callable[[], bool]):
        self.session, self.outcome = session, outcome
        self.cfg = cfg = session.config
        self.run_dir = session.run_dir
        self.device = resolve_device(session.device_name)
        torch.set_num_threads(torch_threads())  # also on a GPU: previews run Griffin-Lim on the CPU
        _remove_stale_temp_files(self.run_dir)

        payload, base, train_feats = self._features(should_stop)
        frames = head_frames(self.spec, cfg.segment_seconds)
        atomic_write_json(self.run_dir / "features.json", {"feature_spec": self.spec.to_dict(),
                                                            "feature_stats": self.stats.__dict__, "segment_frames": frames})
        train_bank = SoundBank(train_feats, self.stats, self.spec, frames, self.device)
        val_bank = (SoundBank(compute_log_features(session.val_files, self.spec, should_stop), self.stats, self.spec,
                              frames, self.device) if session.val_files else None)
        self.shape = SoundShape(n_bands=self.spec.n_bands, frames=frames, latent_dim=cfg.latent_dim,
                                local_dim=cfg.local_dim, width=cfg.width, dropout=cfg.dropout,
                                frame_seconds=self.spec.hop_length / self.spec.sample_rate,
                                attribute_dims=ATTRIBUTES[:cfg.latent_dim] if cfg.attribute_weight > 0 else ())
        self.trainer = Trainer(cfg, self.shape, train_bank, val_bank, self.stats.std, self.device)
        if base is not None:
            self.trainer.model.load_state_dict(ckpt.model_state(base))
            # its latent space is already shaped: a KL warm-up from 0 would let it sprawl (the loss
            # jumped 30x in the second epoch of a demo run started from a demo model)
            self.trainer.kl_ramp = 1

        self.history: list[EpochMetrics] = []
        self.epochs_done, self.elapsed_before, self.best_val, self.best_epoch = 0, 0.0, None, None
        if payload is not None:
            self._restore(payload)
        outcome.epochs_done, outcome.checkpoint_epoch = self.epochs_done, self.epochs_done
        outcome.best_val, outcome.best_epoch = self.best_val, self.best_epoch
        self.patience_from = self.epochs_done  # a resumed run waits its full patience again
        self.last_saved_epoch = self.epochs_done
        save_history(self.run_dir, self.history)

        self.preview_clip = previews.preview_example(val_bank or train_bank)
        # What a generated sound's length defaults to: the median length of the sounds learnt from.
        self.typical_seconds = round(float(torch.tensor([m.shape[1] for m in train_feats], dtype=torch.float64)
                                           .median()) * self.spec.hop_length / self.spec.sample_rate, 3)
        write_run_record(self.run_dir, typical_seconds=self.typical_seconds)
        self.prior_z = torch.randn(1, cfg.latent_dim, generator=torch.Generator().manual_seed(cfg.seed + 1))
        self.best_state: dict | None = None  # best weights so far, kept in memory until the next checkpoint write
        self.epoch_walls: list[float] = []
        self.started = time.perf_counter()

    # -- preparing ------------------------------------------------------------

    def _features(self, should_stop):
        """Sets spec and stats; (resume payload or None, start-from payload or None, training features)."""
        session = self.session
        payload = base = None
        if session.resume:
            payload = ckpt.load_checkpoint(ckpt.get_latest_checkpoint(self.run_dir), map_location=self.device)  # latest, never best
            self.spec, self.stats = checkpoint_spec(payload), FeatureStats(**payload["feature_stats"])
        elif session.start_from is not None:  # the other model's features and normalisation, so its weights fit
            base = ckpt.load_checkpoint(ckpt.get_best_checkpoint(session.start_from), map_location=self.device)
            self.spec, self.stats = checkpoint_spec(base), FeatureStats(**base["feature_stats"])
        else:
            self.spec = default_spec(_sample_rates(session.train_files + session.val_files))
        train_feats = compute_log_features(session.train_files, self.spec, should_stop)
        if payload is None and base is None:
            self.stats = feature_stats(train_feats)
        return payload, base, train_feats

    def _restore(self, payload: dict) -> None:
        self.epochs_done = int(payload["epoch"])
        self.trainer.load_state_dict(payload["trainer"], self.cfg.epochs, self.epochs_done)
        self.history = [EpochMetrics(**row) for row in payload["history"]][:self.epochs_done]
        self.elapsed_before = float(payload.get("elapsed_s", 0.0))
        self.best_val, self.best_epoch = payload.get("best_val_loss"), payload.get("best_epoch")
        _remove_previews_after(self.run_dir, self.epochs_done)  # written after the checkpoint by a run that died

    # -- during the loop ------------------------------------------------------

    def started_event(self) -> RunStarted:
        s = self.session
        return RunStarted(s.run_id, s.dataset, self.cfg.epochs, self.epochs_done, len(s.train_files),
                          len(s.val_files), str(self.device))

    def step_reporter(self, epoch: int, emit) -> Callable[[int], None]:
        """on_step for one epoch: a StepProgress at most every STEP_EVENT_INTERVAL_S, and at its last step."""
        steps, last = self.trainer.steps_per_epoch, [0.0]

        def on_step(step: int) -> None:
            now = time.perf_counter()
            if step == steps or now - last[0] >= STEP_EVENT_INTERVAL_S:
                last[0] = now
                emit(StepProgress(epoch, step, steps))

        return on_step

    def end_epoch(self, epoch: int, result: EpochResult, val: EpochResult | None) -> None:
        """Count the epoch, and keep its weights in memory if they are the best so far."""
        score = val.loss if val is not None else result.loss
        if self.best_val is None or score < self.best_val:
            self.best_val, self.best_epoch = score, epoch
            self.best_state = {**self._common_payload(epoch), "model": {
                k: v.detach().to("cpu", copy=True) for k, v in self.trainer.model.state_dict().items()}}
        self.epochs_done = epoch
        self.outcome.epochs_done, self.outcome.best_val, self.outcome.best_epoch = epoch, self.best_val, self.best_epoch

    def preview(self, epoch: int) -> tuple[PreviewEvent | None, float]:
        """Previews when this epoch is due one: (its event, seconds it took), else (None, 0)."""
        if not (epoch % self.cfg.preview_every == 0 or epoch == self.cfg.epochs):
            return None, 0.0
        t0 = time.perf_counter()
        recon_path, prior_path = preview_paths(self.run_dir, epoch)
        previews.write_previews(self.trainer.model, self.preview_clip, self.prior_z, self.stats, self.spec, recon_path, prior_path)
        return PreviewEvent(epoch, str(recon_path), str(prior_path)), time.perf_counter() - t0

    def metrics(self, epoch: int, result: EpochResult, val: EpochResult | None, wall_s: float) -> EpochMetrics:
        """The epoch's metrics, added to the history; the ETA from the last 20 epochs' wall times."""
        self.epoch_walls.append(wall_s)
        mean_epoch = sum(self.epoch_walls[-20:]) / len(self.epoch_walls[-20:])
        metrics = EpochMetrics(
            epoch=epoch, total_epochs=self.cfg.epochs, train_loss=result.loss,
            val_loss=val.loss if val else None, train_recon=result.recon, train_kl=result.kl,
            val_recon=val.recon if val else None, val_kl=val.kl if val else None,
            learning_rate=self.trainer.current_lr(), elapsed_s=self.elapsed(),
            eta_s=mean_epoch * (self.cfg.epochs - epoch),
        )
        self.history.append(metrics)
        return metrics

    def checkpoint_if_due(self, epoch: int) -> None:
        """Every `checkpoint_every` epochs and at the last one; it records the epoch's own elapsed time."""
        if epoch % self.cfg.checkpoint_every == 0 or epoch == self.cfg.epochs:
            self.write_checkpoints(epoch, self.history[-1].elapsed_s)
            self.last_saved_epoch = epoch

    def out_of_patience(self, epoch: int) -> bool:
        cfg = self.cfg
        return bool(cfg.patience and epoch < cfg.epochs
                    and epoch - max(self.best_epoch or 0, self.patience_from) >= cfg.patience)

    def elapsed(self) -> float:
        """Training seconds of the whole run, earlier sessions included."""
        return self.elapsed_before + (time.perf_counter() - self.started)

    # -- checkpoints and the end ----------------------------------------------

    def _common_payload(self, epoch: int) -> dict:
        s = self.session
        return {"epoch": epoch, "config": self.cfg.to_dict(), "model_shape": self.shape.to_dict(),
                "feature_spec": self.spec.to_dict(), "feature_stats": self.stats.__dict__,
                "best_val_loss": self.best_val, "dataset": s.dataset, "run_id": s.run_id,
                "typical_seconds": self.typical_seconds, "best_epoch": self.best_epoch}

    def write_checkpoints(self, epoch: int, elapsed: float) -> None:
        """best.pt if a new best is waiting in memory, then latest.pt, the history and run.json."""
        folder = ckpt.checkpoint_dir(self.run_dir)
        if self.best_state is not None:
            ckpt.save_checkpoint(folder / ckpt.BEST, self.best_state)
            self.best_state = None
        ckpt.save_checkpoint(folder / ckpt.LATEST, {
            **self._common_payload(epoch), "trainer": self.trainer.state_dict(),
            "history": [m.to_dict() for m in self.history], "elapsed_s": elapsed,
        })
        save_history(self.run_dir, self.history)
        write_run_record(self.run_dir, epochs_done=epoch, best_val_loss=self.best_val, best_epoch=self.best_epoch,
                         updated=now_iso())
        self.outcome.checkpoint = str(folder / ckpt.LATEST)
        self.outcome.checkpoint_epoch = epoch

    def save_at_the_end(self, cancelled_mid_epoch: bool) -> None:
        """A last checkpoint unless the latest one already holds every finished epoch and the best."""
        already_saved = self.epochs_done == self.last_saved_epoch and ckpt.get_latest_checkpoint(self.run_dir) is not None
        if cancelled_mid_epoch or not already_saved or self.best_state is not None:
            self.write_checkpoints(self.epochs_done, self.elapsed())


def _sample_rates(paths: list[Path]) -> list[int]:
    """The files' own sample rates (headers only): the model's rate follows the majority."""
    import soundfile as sf

    return [int(sf.info(str(path)).samplerate) for path in paths]


def _remove_stale_temp_files(run_dir: Path) -> None:
    """Temp files of writes cut short by a kill -9; the real files are intact."""
    for path in run_dir.rglob(".*.tmp"):
        path.unlink(missing_ok=True)


def _remove_previews_after(run_dir: Path, epoch: int) -> None:
    for preview in list_previews(run_dir):
        if preview.epoch > epoch:
            Path(preview.audio_path).unlink(missing_ok=True)
            Path(preview.prior_path).unlink(missing_ok=True)
