"""The TrainingRunner end to end on a tiny real dataset (written by the test)."""
import json

import numpy as np
import pytest
import soundfile as sf

from sda_web.datasets import import_folder
from sda_web.training import (
    CheckpointError, EpochMetrics, PreviewEvent, RunnerBusy, RunStarted, StepProgress, TrainingRunner,
    get_best_checkpoint, get_latest_checkpoint, list_checkpoints, list_runs, load_history, load_run,
)
from sda_web.generation.after_training import analyse_trained_run
from sda_web.checkpoints import load_checkpoint
from training_helpers import finished, tiny_config

pytestmark = pytest.mark.trains  # every test here trains a real model


def test_short_run_learns_and_writes_previews_and_checkpoints(data_dir, dataset, event_log):
    runner = TrainingRunner(data_dir, after_training=analyse_trained_run)
    run_id = runner.start("tones", tiny_config(epochs=30, preview_every=15), event_log)
    done = event_log.wait_for(finished)
    assert done.outcome == "completed", done.error
    metrics = event_log.of(EpochMetrics)
    assert [m.epoch for m in metrics] == list(range(1, 31))
    assert all(np.isfinite([m.train_loss, m.val_loss, m.train_recon, m.train_kl, m.learning_rate]).all() for m in metrics)
    assert metrics[-1].train_loss < 0.7 * metrics[0].train_loss
    assert metrics[-1].eta_s == 0.0 and metrics[0].eta_s > 0
    started = event_log.of(RunStarted)[0]
    assert started.val_files >= 1 and started.train_files + started.val_files == 6
    steps = event_log.of(StepProgress)
    assert steps and steps[-1].step == steps[-1].steps_per_epoch

    previews = event_log.of(PreviewEvent)
    assert [p.epoch for p in previews] == [15, 30]
    for p in previews:
        for path in (p.audio_path, p.prior_path):
            audio, rate = sf.read(path)
            assert rate == 48000 and len(audio) > 10000
            assert np.isfinite(audio).all() and np.abs(audio).max() > 0.1

    run_dir = load_run(data_dir, run_id).run_dir
    assert {p.name for p in list_checkpoints(run_dir)} == {"latest.pt", "best.pt"}
    assert get_best_checkpoint(run_dir).name == "best.pt"
    latest = load_checkpoint(get_latest_checkpoint(run_dir))
    assert latest["epoch"] == 30 and len(latest["history"]) == 30
    info = load_run(data_dir, run_id)
    assert info.status == "completed" and info.epochs_done == 30
    assert info.best_val_loss == pytest.approx(min(m.val_loss for m in metrics))
    # JSON on disk is strict JSON (no Infinity/NaN) and matches the events.
    for name in ("metrics.json", "run.json", "config.json", "features.json"):
        json.loads((run_dir / name).read_text(), parse_constant=lambda c: pytest.fail(f"{name} holds {c}"))
    assert load_history(run_dir) == metrics


def test_cancel_then_resume_continues_one_history(data_dir, dataset, event_log):
    runner = TrainingRunner(data_dir, after_training=analyse_trained_run)
    run_id = runner.start("tones", tiny_config(epochs=8), event_log)
    event_log.wait_for(lambda e: isinstance(e, EpochMetrics) and e.epoch == 3)
    assert runner.cancel()
    done = event_log.wait_for(finished)
    assert done.outcome == "cancelled"
    stopped_at = done.epochs_done
    assert 3 <= stopped_at < 8
    assert load_run(data_dir, run_id).status == "cancelled"
    assert not runner.cancel()  # nothing running now

    second = type(event_log)()
    assert runner.resume(run_id, second, epochs=10) == run_id
    started = second.wait_for(lambda e: isinstance(e, RunStarted))
    assert started.start_epoch == stopped_at
    done2 = second.wait_for(finished)
    assert done2.outcome == "completed" and done2.epochs_done == 10
    resumed = second.of(EpochMetrics)
    assert resumed[0].epoch == stopped_at + 1
    history = load_history(load_run(data_dir, run_id).run_dir)
    assert [m.epoch for m in history] == list(range(1, 11))
    first_part = {m.epoch: m for m in event_log.of(EpochMetrics)}
    assert all(history[i] == first_part[i + 1] for i in range(stopped_at))
    # The LR of the resumed part never climbs above where it stopped.
    assert max(m.learning_rate for m in resumed) <= history[stopped_at - 1].learning_rate + 1e-12
    assert resumed[0].elapsed_s >= history[stopped_at - 1].elapsed_s


def test_second_start_while_running_is_refused(data_dir, dataset, event_log):
    runner = TrainingRunner(data_dir, after_training=analyse_trained_run)
    runner.start("tones", tiny_config(epochs=50), event_log)
    try:
        with pytest.raises(RunnerBusy, match="already active"):
            runner.start("tones", tiny_config(), event_log)
        with pytest.raises(RunnerBusy):
            runner.resume(list_runs(data_dir)[0].run_id, event_log)
    finally:
        runner.cancel()
        event_log.wait_for(finished)


def test_nan_loss_fails_clearly_and_keeps_the_last_good_checkpoint(data_dir, dataset, event_log, monkeypatch):
    import sda_web.training.trainer as trainer_module

    real_loss = trainer_module.sound_vae_loss
    calls = {"n": 0}

    def loss_that_explodes(*args, **kwargs):
        calls["n"] += 1
        result = real_loss(*args, **kwargs)
        if calls["n"] > 12:  # a few epochs in
            return result._replace(total=result.total * float("nan"))
        return result

    monkeypatch.setattr(trainer_module, "sound_vae_loss", loss_that_explodes)
    runner = TrainingRunner(data_dir, after_training=analyse_trained_run, in_process=True)  # the patch must reach the engine
    run_id = runner.start("tones", tiny_config(epochs=20, checkpoint_every=3), event_log)
    done = event_log.wait_for(finished)
    assert done.outcome == "failed"
    assert "nan" in done.error.lower() and "learning rate" in done.error
    info = load_run(data_dir, run_id)
    assert info.status == "failed" and info.error == done.error
    payload = load_checkpoint(get_latest_checkpoint(info.run_dir))
    assert payload["epoch"] >= 3 and payload["epoch"] % 3 == 0
    assert all(np.isfinite(m["train_loss"]) for m in payload["history"])
    # What a resume starts from is the last good checkpoint, whatever the run reached after it.
    assert info.epochs_done == payload["epoch"] == len(load_history(info.run_dir))


def test_exception_in_the_thread_becomes_a_failed_event(data_dir, dataset, event_log, monkeypatch):
    import sda_web.training.previews as previews

    def broken(*args, **kwargs):
        raise RuntimeError("sound card on fire")

    monkeypatch.setattr(previews, "write_previews", broken)
    runner = TrainingRunner(data_dir, after_training=analyse_trained_run, in_process=True)  # the patch must reach the engine
    runner.start("tones", tiny_config(epochs=3, preview_every=1), event_log)
    done = event_log.wait_for(finished)
    assert done.outcome == "failed" and "sound card on fire" in done.error
    assert not runner.is_running


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_damaged_checkpoint_gives_a_clear_error(data_dir, dataset, event_log, damage):
    runner = TrainingRunner(data_dir, after_training=analyse_trained_run)
    run_id = runner.start("tones", tiny_config(epochs=2), event_log)
    event_log.wait_for(finished)
    latest = get_latest_checkpoint(load_run(data_dir, run_id).run_dir)
    data = latest.read_bytes()
    latest.write_bytes(b"this is not a checkpoint" if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="damaged or not an sda-web checkpoint"):
        load_checkpoint(latest)
    again = type(event_log)()
    runner.resume(run_id, again, epochs=4)
    done = again.wait_for(finished)
    assert done.outcome == "failed" and "damaged" in done.error


def test_single_file_dataset_trains_without_validation(data_dir, tmp_path, event_log):
    folder = tmp_path / "one"
    folder.mkdir()
    t = np.arange(2400) / 24000  # a 100 ms one-shot: padded, never rejected
    sf.write(folder / "click.wav", (np.exp(-t * 40) * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 24000)
    import_folder(data_dir, folder, name="one")
    runner = TrainingRunner(data_dir, after_training=analyse_trained_run)
    runner.start("one", tiny_config(epochs=2, preview_every=1), event_log)
    done = event_log.wait_for(finished)
    assert done.outcome == "completed", done.error
    assert all(m.val_loss is None for m in event_log.of(EpochMetrics))
    assert len(event_log.of(PreviewEvent)) == 2
