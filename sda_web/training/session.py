"""One training run from start to its final event, wherever it runs.

`run_session` is the whole body of a run: it trains, checkpoints and writes
previews, reports through `emit`, and turns whatever happens into exactly one
TrainingCompleteEvent (completed, cancelled or failed), which it returns
rather than emits, so the caller can mark itself idle first. The runner calls
it on a thread of its own process (in-process mode) or in a child process
(`worker.py`); the Session is plain, picklable data for that reason.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..storage import atomic_write_json
from .config import ConfigError, TrainingConfig
from .devices import resolve_device, torch_threads
from .events import EpochMetrics, PreviewEvent, RunStarted, StepProgress, TrainingCompleteEvent, TrainingEvent
from .runs import RunError, now_iso, preview_paths, save_history, write_progress, write_run_record

Emit = Callable[[TrainingEvent], None]
TimingSink = Callable[[dict], None]
STEP_EVENT_INTERVAL_S = 0.2  # at most ~5 step events a second: smooth enough for a bar, cheap for 200 viewers


@dataclass
class Session:
    """What a run needs, decided and validated by the runner before it starts."""
    run_id: str
    run_dir: Path
    dataset: str
    config: TrainingConfig
    train_files: list[Path]
    val_files: list[Path]
    device_name: str
    resume: bool
    start_from: Path | None = None  # a new run starts from this model's best weights (its run folder)


def run_session(session: Session, stop: threading.Event, emit: Emit, on_timing: TimingSink) -> TrainingCompleteEvent:
    """Train `session` until done, cancelled (`stop` set) or failed; record the outcome in run.json.

    `emit` must never raise (the runner wraps listeners); `on_timing` gets each epoch's timings."""
    from .data import FeaturesCancelled

    outcome = _Outcome(session.config.epochs)
    try:
        _train(session, stop, outcome, emit, on_timing)
    except FeaturesCancelled:
        outcome.outcome = "cancelled"
    except BaseException as exc:  # nothing vanishes: every failure becomes an event
        outcome.outcome = "failed"
        outcome.error = describe_failure(exc)
    try:  # run.json counts the epochs a resume would start from: those in the latest checkpoint
        write_run_record(session.run_dir, status=outcome.outcome, epochs_done=outcome.checkpoint_epoch,
                         best_val_loss=outcome.best_val, best_epoch=outcome.best_epoch,
                         patience_stop=outcome.patience, error=outcome.error, updated=now_iso())
    except Exception as exc:
        outcome.outcome, outcome.error = "failed", outcome.error or describe_failure(exc)
    return TrainingCompleteEvent(
        outcome=outcome.outcome, epochs_done=outcome.epochs_done, total_epochs=session.config.epochs,
        best_val_loss=outcome.best_val, checkpoint_path=outcome.checkpoint, error=outcome.error,
        best_epoch=outcome.best_epoch, patience=outcome.patience,
    )


@dataclass
class _Outcome:
    total: int
    outcome: str = "completed"
    epochs_done: int = 0
    checkpoint_epoch: int = 0
    best_val: float | None = None
    best_epoch: int | None = None
    patience: int | None = None  # set when the run stopped itself for want of a new best
    checkpoint: str | None = None
    error: str | None = None


def describe_failure(exc: BaseException) -> str:
    from ..datasets import DatasetError
    from .checkpoints import CheckpointError
    from .trainer import TrainingDiverged

    if isinstance(exc, (TrainingDiverged, CheckpointError, ConfigError, DatasetError, RunError)):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "Training ran out of memory; use a smaller batch size or fewer/shorter files."
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc)
        return f"Could not read or write a file in the data directory ({reason}); check disk space and permissions."
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"Training failed unexpectedly: {type(exc).__name__}{': ' + text if text else ''}."


def _sample_rates(paths: list[Path]) -> list[int]:
    """The files' own sample rates (headers only): the model's rate follows the majority."""
    import soundfile as sf

    return [int(sf.info(str(path)).samplerate) for path in paths]


def _remove_stale_temp_files(run_dir: Path) -> None:
    """Temp files of writes cut short by a kill -9; the real files are intact."""
    for path in run_dir.rglob(".*.tmp"):
        path.unlink(missing_ok=True)


def _remove_previews_after(run_dir: Path, epoch: int) -> None:
    from .runs import list_previews

    for preview in list_previews(run_dir):
        if preview.epoch > epoch:
            Path(preview.audio_path).unlink(missing_ok=True)
            Path(preview.prior_path).unlink(missing_ok=True)


def _train(session: Session, stop: threading.Event, outcome: _Outcome, emit: Emit, on_timing: TimingSink) -> None:
    """The body of a run."""
    import torch

    from ..audio.features import checkpoint_spec, default_spec
    from ..model import SoundShape
    from . import checkpoints as ckpt
    from .data import FeatureStats, SoundBank, compute_log_features, feature_stats, head_frames
    from .previews import preview_example, write_previews
    from .trainer import Trainer

    cfg = session.config
    device = resolve_device(session.device_name)
    torch.set_num_threads(torch_threads())  # also on a GPU: previews run Griffin-Lim on the CPU
    run_dir = session.run_dir
    features_path = run_dir / "features.json"
    _remove_stale_temp_files(run_dir)
    stop_requested = stop.is_set

    payload = base = None
    if session.resume:
        latest = ckpt.get_latest_checkpoint(run_dir)
        payload = ckpt.load_checkpoint(latest, map_location=device)  # latest, never best
        spec = checkpoint_spec(payload)
        stats = FeatureStats(**payload["feature_stats"])
        train_feats = compute_log_features(session.train_files, spec, stop_requested)
    elif session.start_from is not None:  # the other model's features and normalisation, so its weights fit
        base = ckpt.load_checkpoint(ckpt.get_best_checkpoint(session.start_from), map_location=device)
        spec = checkpoint_spec(base)
        stats = FeatureStats(**base["feature_stats"])
        train_feats = compute_log_features(session.train_files, spec, stop_requested)
    else:
        spec = default_spec(_sample_rates(session.train_files + session.val_files))
        train_feats = compute_log_features(session.train_files, spec, stop_requested)
        stats = feature_stats(train_feats)
    frames = head_frames(spec, cfg.segment_seconds)
    atomic_write_json(features_path, {"feature_spec": spec.to_dict(), "feature_stats": stats.__dict__, "segment_frames": frames})

    train_bank = SoundBank(train_feats, stats, spec, frames, device)
    val_bank = SoundBank(compute_log_features(session.val_files, spec, stop_requested), stats, spec, frames, device) if session.val_files else None
    shape = SoundShape(n_bands=spec.n_bands, frames=frames, latent_dim=cfg.latent_dim, local_dim=cfg.local_dim,
                       width=cfg.width, dropout=cfg.dropout, frame_seconds=spec.hop_length / spec.sample_rate)
    trainer = Trainer(cfg, shape, train_bank, val_bank, stats.std, device)
    if base is not None:
        trainer.model.load_state_dict(ckpt.model_state(base))
        # its latent space is already shaped: a KL warm-up from 0 would let it sprawl (the loss
        # jumped 30x in the second epoch of a demo run started from a demo model)
        trainer.kl_ramp = 1

    history: list[EpochMetrics] = []
    epochs_done, elapsed_before, best_val, best_epoch = 0, 0.0, None, None
    if payload is not None:
        epochs_done = int(payload["epoch"])
        trainer.load_state_dict(payload["trainer"], cfg.epochs, epochs_done)
        history = [EpochMetrics(**row) for row in payload["history"]][:epochs_done]
        elapsed_before = float(payload.get("elapsed_s", 0.0))
        best_val, best_epoch = payload.get("best_val_loss"), payload.get("best_epoch")
        _remove_previews_after(run_dir, epochs_done)  # written after the checkpoint by a run that died
    outcome.epochs_done, outcome.checkpoint_epoch = epochs_done, epochs_done
    outcome.best_val, outcome.best_epoch = best_val, best_epoch
    patience_from = epochs_done  # a resumed run waits its full patience again
    save_history(run_dir, history)

    preview_clip = preview_example(val_bank or train_bank)
    # What a generated sound's length defaults to: the median length of the sounds learnt from.
    typical_seconds = round(float(torch.tensor([m.shape[1] for m in train_feats], dtype=torch.float64).median())
                            * spec.hop_length / spec.sample_rate, 3)
    write_run_record(run_dir, typical_seconds=typical_seconds)
    prior_z = torch.randn(1, cfg.latent_dim, generator=torch.Generator().manual_seed(cfg.seed + 1))

    def common_payload(epoch: int) -> dict:
        return {"epoch": epoch, "config": cfg.to_dict(), "model_shape": shape.to_dict(), "feature_spec": spec.to_dict(),
                "feature_stats": stats.__dict__, "best_val_loss": best_val, "dataset": session.dataset,
                "run_id": session.run_id, "typical_seconds": typical_seconds, "best_epoch": best_epoch}

    best_state: dict | None = None  # best weights so far, kept in memory until the next checkpoint write

    def write_checkpoints(epoch: int, elapsed: float) -> None:
        nonlocal best_state
        if best_state is not None:
            ckpt.save_checkpoint(ckpt.checkpoint_dir(run_dir) / ckpt.BEST, best_state)
            best_state = None
        ckpt.save_checkpoint(ckpt.checkpoint_dir(run_dir) / ckpt.LATEST, {
            **common_payload(epoch), "trainer": trainer.state_dict(),
            "history": [m.to_dict() for m in history], "elapsed_s": elapsed,
        })
        save_history(run_dir, history)
        write_run_record(run_dir, epochs_done=epoch, best_val_loss=best_val, best_epoch=best_epoch, updated=now_iso())
        outcome.checkpoint = str(ckpt.checkpoint_dir(run_dir) / ckpt.LATEST)
        outcome.checkpoint_epoch = epoch

    emit(RunStarted(session.run_id, session.dataset, cfg.epochs, epochs_done,
                                       len(session.train_files), len(session.val_files), str(device)))
    session_started = time.perf_counter()
    steps = trainer.steps_per_epoch
    last_saved_epoch = epochs_done
    epoch_walls: list[float] = []
    cancelled_mid_epoch = False

    for epoch_index in range(epochs_done, cfg.epochs):
        epoch = epoch_index + 1
        wall0 = time.perf_counter()
        last_step_emit = 0.0

        def on_step(step: int) -> None:
            nonlocal last_step_emit
            now = time.perf_counter()
            if step == steps or now - last_step_emit >= STEP_EVENT_INTERVAL_S:
                last_step_emit = now
                emit(StepProgress(epoch, step, steps))

        result = trainer.train_epoch(epoch_index, on_step, stop.is_set)
        if result is None:  # cancelled mid-epoch: its steps stay in the weights, the epoch re-runs on resume
            cancelled_mid_epoch = True
            break
        val = trainer.validate()
        score = val.loss if val is not None else result.loss
        if best_val is None or score < best_val:
            best_val, best_epoch = score, epoch
            best_state = {**common_payload(epoch), "model": {k: v.detach().to("cpu", copy=True)
                                                             for k, v in trainer.model.state_dict().items()}}
        epochs_done = epoch
        outcome.epochs_done, outcome.best_val, outcome.best_epoch = epochs_done, best_val, best_epoch

        wants_preview = epoch % cfg.preview_every == 0 or epoch == cfg.epochs
        preview_s = 0.0
        if wants_preview:
            p0 = time.perf_counter()
            recon_path, prior_path = preview_paths(run_dir, epoch)
            write_previews(trainer.model, preview_clip, prior_z, stats, spec, recon_path, prior_path)
            preview_s = time.perf_counter() - p0
        epoch_walls.append(time.perf_counter() - wall0)
        elapsed = elapsed_before + (time.perf_counter() - session_started)
        mean_epoch = sum(epoch_walls[-20:]) / len(epoch_walls[-20:])
        metrics = EpochMetrics(
            epoch=epoch, total_epochs=cfg.epochs, train_loss=result.loss,
            val_loss=val.loss if val else None, train_recon=result.recon, train_kl=result.kl,
            val_recon=val.recon if val else None, val_kl=val.kl if val else None,
            learning_rate=trainer.current_lr(), elapsed_s=elapsed, eta_s=mean_epoch * (cfg.epochs - epoch),
        )
        history.append(metrics)
        emit(metrics)
        write_progress(run_dir, metrics)
        if wants_preview:
            emit(PreviewEvent(epoch, str(recon_path), str(prior_path)))
        c0 = time.perf_counter()
        if epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs:
            write_checkpoints(epoch, elapsed)
            last_saved_epoch = epoch
        on_timing({
            "epoch": epoch, "wall_s": time.perf_counter() - wall0, "train_s": result.total_s,
            "compute_s": result.compute_s, "val_s": val.total_s if val else 0.0, "preview_s": preview_s,
            "checkpoint_s": time.perf_counter() - c0,
        })
        if stop.is_set():
            break
        if cfg.patience and epoch < cfg.epochs and epoch - max(best_epoch or 0, patience_from) >= cfg.patience:
            outcome.outcome, outcome.patience = "stopped", cfg.patience
            break

    if epochs_done < cfg.epochs and outcome.outcome != "stopped":
        outcome.outcome = "cancelled"
    already_saved = epochs_done == last_saved_epoch and ckpt.get_latest_checkpoint(run_dir) is not None
    if cancelled_mid_epoch or not already_saved or best_state is not None:
        write_checkpoints(epochs_done, elapsed_before + (time.perf_counter() - session_started))
    if epochs_done > 0:  # sound controls and the new-or-copy reference; never turns a trained run into a failed one
        try:
            from ..generation.controls import analyse_run, run_files
            from ..generation.loading import load_trained_model
            from ..generation.novelty import ensure_fingerprints

            model = load_trained_model(run_dir, "best", device)
            analysis = analyse_run(run_dir, model=model)
            ensure_fingerprints(run_dir, model, run_files(run_dir), analysis)
        except Exception:
            import logging

            logging.getLogger(__name__).exception("Latent analysis of run %s failed; the model is kept.", session.run_id)
