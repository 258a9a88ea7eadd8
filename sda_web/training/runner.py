"""TrainingRunner: one background training run at a time, reported as events.

start()/resume() validate everything they can in the caller's thread (so a
bad config or a missing dataset is an immediate, clear error), then return at
once while a daemon thread trains. The thread reports through `callback`,
which must only hand the event off (the web layer uses
loop.call_soon_threadsafe; the CLI a queue). Whatever happens in the thread
ends in exactly one TrainingCompleteEvent: completed, cancelled or failed.

torch is imported inside the thread, so importing this module is cheap.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..storage import atomic_write_json, read_json
from .config import ConfigError, TrainingConfig
from .events import EpochMetrics, PreviewEvent, RunStarted, StepProgress, TrainingCompleteEvent, TrainingEvent
from .split import split_by_file
from .runs import RunError, load_run, mark_live, new_run_id, now_iso, preview_paths, run_dir_for, save_history, write_run_record

Callback = Callable[[TrainingEvent], None]
STEP_EVENT_INTERVAL_S = 0.2  # at most ~5 step events a second: smooth enough for a bar, cheap for 200 viewers


class RunnerBusy(RuntimeError):
    """A run is already active on this runner."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def torch_threads() -> int:
    """Threads for torch on the CPU: half the cores (at least 1, at most 8).

    On a busy 2-core machine 2 threads ran 3-4x slower than 1 (and Griffin-Lim
    10-50x slower), so we leave a core for the rest of the system.
    SDA_THREADS overrides."""
    env = os.environ.get("SDA_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, min(8, (os.cpu_count() or 2) // 2))


def resolve_device(name: str = "auto"):
    import torch

    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("CUDA was requested but no CUDA GPU is available; use --device cpu or auto.")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("MPS was requested but is not available on this machine; use --device cpu or auto.")
    if name not in ("cpu", "mps") and not name.startswith("cuda"):
        raise ConfigError(f"Unknown device {name!r}; use auto, cpu, cuda or mps.")
    return torch.device(name)


@dataclass
class _Session:
    run_id: str
    run_dir: Path
    dataset: str
    config: TrainingConfig
    train_files: list[Path]
    val_files: list[Path]
    device_name: str
    callback: Callback
    resume: bool
    epoch_timings: list[dict] = field(default_factory=list)


class TrainingRunner:
    def __init__(self, data_dir: Path | str):
        self.data_dir = Path(data_dir)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._active_run: str | None = None
        self.last_session: _Session | None = None  # timings for benchmarks

    # -- public API -------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return self._active_run is not None

    @property
    def current_run_id(self) -> str | None:
        return self._active_run

    def start(self, dataset: str, config: TrainingConfig, callback: Callback, device: str = "auto") -> str:
        from ..datasets import DatasetError, load_dataset

        self._ensure_idle()  # checked again under the lock; this answers fast and first
        config = config.validated()
        manifest = load_dataset(self.data_dir, dataset)
        if manifest.file_count == 0:
            raise DatasetError(f"Dataset {manifest.name!r} has no usable sound files; add some on the Data tab.")
        names = [f.name for f in manifest.files]
        train_idx, val_idx = split_by_file(len(names), config.val_fraction, config.seed)
        audio_dir = manifest.audio_dir(self.data_dir)
        with self._lock:
            self._ensure_idle()
            run_id = new_run_id(manifest.name)
            run_dir = run_dir_for(self.data_dir, run_id)
            (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            atomic_write_json(run_dir / "config.json", config.to_dict())
            write_run_record(
                run_dir, run_id=run_id, dataset=manifest.name, status="running", created=now_iso(),
                epochs_done=0, total_epochs=config.epochs, best_val_loss=None, pid=os.getpid(),
                train_files=[names[i] for i in train_idx], val_files=[names[i] for i in val_idx], error=None,
            )
            session = _Session(run_id, run_dir, manifest.name, config,
                               [audio_dir / names[i] for i in train_idx], [audio_dir / names[i] for i in val_idx],
                               device, callback, resume=False)
            self._launch(session)
        return run_id

    def resume(self, run_id: str, callback: Callback, epochs: int | None = None, device: str = "auto") -> str:
        from ..datasets import DatasetError

        self._ensure_idle()
        info = load_run(self.data_dir, run_id)
        if not info.has_checkpoint:
            raise RunError(f"Run {run_id!r} has no checkpoint to resume from; start a new run instead.")
        config = TrainingConfig.from_dict(read_json(info.run_dir / "config.json"))
        if epochs is not None:
            config = config.with_overrides(epochs=epochs)
        if config.epochs <= info.epochs_done:
            raise ConfigError(
                f"Run {run_id!r} has already trained {info.epochs_done} of {config.epochs} epochs; "
                f"raise max epochs above {info.epochs_done} to continue it."
            )
        record = read_json(info.run_dir / "run.json")
        other_pid = record.get("pid")
        if info.status == "interrupted" and isinstance(other_pid, int) and other_pid != os.getpid() and _pid_alive(other_pid):
            raise RunError(f"Run {run_id!r} is being trained by another process (pid {other_pid}); stop that one first.")
        from ..datasets import dataset_dir

        audio_dir = dataset_dir(self.data_dir, info.dataset) / "audio"
        train = [audio_dir / n for n in record.get("train_files", []) if (audio_dir / n).is_file()]
        val = [audio_dir / n for n in record.get("val_files", []) if (audio_dir / n).is_file()]
        if not train:
            raise DatasetError(f"The sound files of run {run_id!r} are gone from dataset {info.dataset!r}; it cannot resume.")
        with self._lock:
            self._ensure_idle()
            atomic_write_json(info.run_dir / "config.json", config.to_dict())
            write_run_record(info.run_dir, status="running", total_epochs=config.epochs, pid=os.getpid(), error=None)
            self._launch(_Session(run_id, info.run_dir, info.dataset, config, train, val, device, callback, resume=True))
        return run_id

    def cancel(self) -> bool:
        """Ask the active run to stop at the next step boundary. False if idle."""
        if self._active_run is None:
            return False
        self._stop.set()
        return True

    def wait(self, timeout: float | None = None) -> bool:
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    # -- internals --------------------------------------------------------
    def _ensure_idle(self) -> None:
        if self._active_run is not None:
            raise RunnerBusy(f"A training run ({self._active_run}) is already active; cancel it or wait for it to finish.")

    def _launch(self, session: _Session) -> None:
        self._stop.clear()
        self._active_run = session.run_id
        self.last_session = session
        mark_live(session.run_id, True)
        self._thread = threading.Thread(target=self._run, args=(session,), name=f"train-{session.run_id}", daemon=True)
        self._thread.start()

    def _run(self, session: _Session) -> None:
        from .data import FeaturesCancelled

        outcome = _Outcome(session.config.epochs)
        try:
            _train(session, self._stop, outcome)
        except FeaturesCancelled:
            outcome.outcome = "cancelled"
        except BaseException as exc:  # nothing vanishes: every failure becomes an event
            outcome.outcome = "failed"
            outcome.error = _describe(exc)
        finally:
            try:  # run.json counts the epochs a resume would start from: those in the latest checkpoint
                write_run_record(session.run_dir, status=outcome.outcome, epochs_done=outcome.checkpoint_epoch,
                                 best_val_loss=outcome.best_val, error=outcome.error, updated=now_iso())
            except Exception as exc:
                outcome.outcome, outcome.error = "failed", outcome.error or _describe(exc)
            mark_live(session.run_id, False)
            self._active_run = None  # idle before the last event: a listener may start the next run
            _emit(session.callback, TrainingCompleteEvent(
                outcome=outcome.outcome, epochs_done=outcome.epochs_done, total_epochs=session.config.epochs,
                best_val_loss=outcome.best_val, checkpoint_path=outcome.checkpoint, error=outcome.error,
            ))


@dataclass
class _Outcome:
    total: int
    outcome: str = "completed"
    epochs_done: int = 0
    checkpoint_epoch: int = 0
    best_val: float | None = None
    checkpoint: str | None = None
    error: str | None = None


def _emit(callback: Callback, event: TrainingEvent) -> None:
    try:
        callback(event)
    except Exception:  # a broken listener must not kill the run
        pass


def _describe(exc: BaseException) -> str:
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


def _train(session: _Session, stop: threading.Event, outcome: _Outcome) -> None:
    """The body of a run, on the training thread."""
    import torch

    from ..audio.features import MelSpec
    from ..model import ModelShape
    from . import checkpoints as ckpt
    from .data import FeatureStats, SegmentBank, compute_log_mels, feature_stats, segment_frames
    from .previews import write_previews
    from .trainer import Trainer

    cfg = session.config
    device = resolve_device(session.device_name)
    torch.set_num_threads(torch_threads())  # also on a GPU: previews run Griffin-Lim on the CPU
    run_dir = session.run_dir
    features_path = run_dir / "features.json"
    _remove_stale_temp_files(run_dir)
    stop_requested = stop.is_set

    payload = None
    if session.resume:
        latest = ckpt.get_latest_checkpoint(run_dir)
        payload = ckpt.load_checkpoint(latest, map_location=device)  # latest, never best
        spec = MelSpec.from_dict(payload["mel_spec"])
        stats = FeatureStats(**payload["feature_stats"])
        train_mels = compute_log_mels(session.train_files, spec, stop_requested)
    else:
        spec = MelSpec()
        train_mels = compute_log_mels(session.train_files, spec, stop_requested)
        stats = feature_stats(train_mels)
    frames = segment_frames(spec, cfg.segment_seconds)
    atomic_write_json(features_path, {"mel_spec": spec.to_dict(), "feature_stats": stats.__dict__, "segment_frames": frames})

    train_bank = SegmentBank(train_mels, stats, spec, frames, device)
    val_bank = SegmentBank(compute_log_mels(session.val_files, spec, stop_requested), stats, spec, frames, device) if session.val_files else None
    shape = ModelShape(n_mels=spec.n_mels, frames=frames, latent_dim=cfg.latent_dim, width=cfg.width, dropout=cfg.dropout)
    trainer = Trainer(cfg, shape, train_bank, val_bank, stats.std, device)

    history: list[EpochMetrics] = []
    epochs_done, elapsed_before, best_val = 0, 0.0, None
    if payload is not None:
        epochs_done = int(payload["epoch"])
        trainer.load_state_dict(payload["trainer"], cfg.epochs, epochs_done)
        history = [EpochMetrics(**row) for row in payload["history"]][:epochs_done]
        elapsed_before = float(payload.get("elapsed_s", 0.0))
        best_val = payload.get("best_val_loss")
        _remove_previews_after(run_dir, epochs_done)  # written after the checkpoint by a run that died
    outcome.epochs_done, outcome.checkpoint_epoch, outcome.best_val = epochs_done, epochs_done, best_val
    save_history(run_dir, history)

    preview_bank = val_bank or train_bank
    preview_positions = preview_bank.fixed_positions()
    loudest = int(preview_bank.gather(preview_positions).mean(dim=(1, 2)).argmax())
    preview_clip = preview_bank.gather(preview_positions[loudest:loudest + 1])[0]
    prior_z = torch.randn(1, cfg.latent_dim, generator=torch.Generator().manual_seed(cfg.seed + 1))

    def common_payload(epoch: int) -> dict:
        return {"epoch": epoch, "config": cfg.to_dict(), "model_shape": shape.to_dict(), "mel_spec": spec.to_dict(),
                "feature_stats": stats.__dict__, "best_val_loss": best_val, "dataset": session.dataset,
                "run_id": session.run_id}

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
        write_run_record(run_dir, epochs_done=epoch, best_val_loss=best_val, updated=now_iso())
        outcome.checkpoint = str(ckpt.checkpoint_dir(run_dir) / ckpt.LATEST)
        outcome.checkpoint_epoch = epoch

    _emit(session.callback, RunStarted(session.run_id, session.dataset, cfg.epochs, epochs_done,
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
                _emit(session.callback, StepProgress(epoch, step, steps))

        result = trainer.train_epoch(epoch_index, on_step, stop.is_set)
        if result is None:  # cancelled mid-epoch: its steps stay in the weights, the epoch re-runs on resume
            cancelled_mid_epoch = True
            break
        val = trainer.validate()
        score = val.loss if val is not None else result.loss
        if best_val is None or score < best_val:
            best_val = score
            best_state = {**common_payload(epoch), "model": {k: v.detach().to("cpu", copy=True)
                                                             for k, v in trainer.model.state_dict().items()}}
        epochs_done = epoch
        outcome.epochs_done, outcome.best_val = epochs_done, best_val

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
        _emit(session.callback, metrics)
        if wants_preview:
            _emit(session.callback, PreviewEvent(epoch, str(recon_path), str(prior_path)))
        c0 = time.perf_counter()
        if epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs:
            write_checkpoints(epoch, elapsed)
            last_saved_epoch = epoch
        session.epoch_timings.append({
            "epoch": epoch, "wall_s": time.perf_counter() - wall0, "train_s": result.total_s,
            "compute_s": result.compute_s, "val_s": val.total_s if val else 0.0, "preview_s": preview_s,
            "checkpoint_s": time.perf_counter() - c0,
        })
        if stop.is_set():
            break

    if epochs_done < cfg.epochs:
        outcome.outcome = "cancelled"
    already_saved = epochs_done == last_saved_epoch and ckpt.get_latest_checkpoint(run_dir) is not None
    if cancelled_mid_epoch or not already_saved or best_state is not None:
        write_checkpoints(epochs_done, elapsed_before + (time.perf_counter() - session_started))
    if epochs_done > 0:  # sound controls for the Generate tab; never turns a trained run into a failed one
        try:
            from ..generation.controls import analyse_run

            analyse_run(run_dir, device=device)
        except Exception:
            import logging

            logging.getLogger(__name__).exception("Latent analysis of run %s failed; the model is kept.", session.run_id)
