"""Training that knows when it is done: the memorisation sign, stop at best (patience),
best or last weights, starting from an existing model."""
from __future__ import annotations

import pytest

from sda_web.audio.demo import write_demo_sounds
from sda_web.datasets import import_folder
from sda_web.generation.after_training import analyse_trained_run
from sda_web.training import TrainingRunner, get_adaptive_config
from sda_web.training.events import EpochMetrics, TrainingCompleteEvent
from sda_web.training.memorisation import memorisation_sign
from sda_web.training.runs import load_history, load_run
from training_helpers import finished, tiny_config


def metrics(epoch, train, val, total=400):
    return EpochMetrics(epoch=epoch, total_epochs=total, train_loss=train, val_loss=val, train_recon=train,
                        train_kl=0.0, val_recon=val, val_kl=0.0, learning_rate=1e-3, elapsed_s=epoch, eta_s=0.0)


def train_to_end(data_dir, dataset, config, event_log, **start):
    runner = TrainingRunner(data_dir, after_training=analyse_trained_run, in_process=True)
    run_id = runner.start(dataset, config, event_log, **start)
    done = event_log.wait_for(finished, timeout=600)
    runner.wait(10)
    return run_id, done


# ---- the rule, on histories with a known answer -------------------------------

def test_a_rising_held_out_loss_is_memorising_and_names_where_it_began():
    history = [metrics(e, 1.0 / e ** 0.5, 0.5 + abs(e - 100) / 400) for e in range(1, 301)]
    sign = memorisation_sign(history, 400)
    assert sign is not None and 90 <= sign.began_epoch <= 110 and sign.best_epoch == 100
    assert "memorise" in sign.sentence() and "epoch 100" in sign.sentence()


@pytest.mark.parametrize("val", [
    lambda e: 1.0 / e ** 0.3,  # still improving
    lambda e: 0.5 + (0.15 if e % 7 == 0 else 0.0),  # flat, with one-file spikes
])
def test_no_sign_while_held_out_loss_improves_or_only_jitters(val):
    assert memorisation_sign([metrics(e, 1.0 / e ** 0.5, val(e)) for e in range(1, 301)], 400) is None


def test_no_sign_without_held_out_files():
    assert memorisation_sign([metrics(e, 1.0 / e, None) for e in range(1, 301)], 400) is None


# ---- real training on tiny data -----------------------------------------------

@pytest.mark.trains
def test_the_sign_fires_on_five_files_trained_four_times_too_long(data_dir, tmp_path, event_log):
    write_demo_sounds(tmp_path / "demo5", 5)
    manifest = import_folder(data_dir, tmp_path / "demo5", name="demo5")
    preset = get_adaptive_config(manifest.file_count)
    config = preset.with_overrides(epochs=4 * preset.epochs, patience=0, width=24, latent_dim=16)
    run_id, done = train_to_end(data_dir, "demo5", config, event_log)
    assert done.outcome == "completed"
    history = load_history(load_run(data_dir, run_id).run_dir)
    # what the Train tab would have said after each epoch: memorising, for a good part of the run
    signs = [memorisation_sign(history[:n], config.epochs) for n in range(1, len(history) + 1)]
    fired = [(n, sign) for n, sign in enumerate(signs, start=1) if sign is not None]
    assert fired and fired[0][0] < 0.6 * config.epochs
    # (how much of the run it covers moves with float rounding: 18-25% of 1200 epochs seen)
    assert len(fired) > 0.15 * config.epochs
    assert all(sign.began_epoch < n for n, sign in fired)


@pytest.mark.trains
def test_the_sign_stays_quiet_on_a_default_run_of_fifty_files(data_dir, tmp_path, event_log):
    write_demo_sounds(tmp_path / "demo50", 50, seed=3)
    manifest = import_folder(data_dir, tmp_path / "demo50", name="demo50")
    config = get_adaptive_config(manifest.file_count).with_overrides(width=24, latent_dim=16, patience=0)
    run_id, done = train_to_end(data_dir, "demo50", config, event_log)
    history = load_history(load_run(data_dir, run_id).run_dir)
    assert done.outcome == "completed" and len(history) == config.epochs
    assert all(memorisation_sign(history[:n], config.epochs) is None for n in range(1, len(history) + 1))


@pytest.mark.trains
def test_patience_stops_within_patience_of_the_best_and_resume_still_works(data_dir, dataset, event_log):
    config = tiny_config(epochs=200, patience=3)
    runner = TrainingRunner(data_dir, after_training=analyse_trained_run, in_process=True)
    run_id = runner.start("tones", config, event_log)
    done = event_log.wait_for(finished, timeout=300)
    runner.wait(10)
    assert done.outcome == "stopped" and done.patience == 3
    assert done.epochs_done - done.best_epoch == 3 and done.epochs_done < 200
    info = load_run(data_dir, run_id)
    assert info.status == "stopped" and info.best_epoch == done.best_epoch and info.patience == 3
    history = load_history(info.run_dir)
    best = min(history, key=lambda m: m.val_loss)
    assert best.epoch == done.best_epoch  # the best weights are the lowest held-out loss

    event_log.events.clear()
    runner.resume(run_id, event_log)
    again = event_log.wait_for(finished, timeout=300)
    runner.wait(10)
    assert again.outcome in ("stopped", "completed") and again.epochs_done >= done.epochs_done + 3
    assert event_log.of(EpochMetrics)[0].epoch == done.epochs_done + 1


def test_presets_stop_at_best_by_default_and_aggressive_trains_to_the_end():
    balanced = get_adaptive_config(40, "balanced")
    assert 0 < balanced.patience < balanced.epochs
    assert get_adaptive_config(40, "aggressive").patience == 0
    assert balanced.with_overrides(epochs=2 * balanced.epochs).patience > balanced.patience  # the share, rescaled
    assert balanced.with_overrides(epochs=2 * balanced.epochs, patience=7).patience == 7


@pytest.mark.trains
def test_a_run_started_from_a_model_begins_where_that_model_is(data_dir, dataset, tmp_path, event_log):
    base_id, _ = train_to_end(data_dir, "tones", tiny_config(epochs=30, patience=0), event_log)
    write_demo_sounds(tmp_path / "few", 5)
    import_folder(data_dir, tmp_path / "few", name="few")
    event_log.events.clear()
    scratch_id, _ = train_to_end(data_dir, "few", tiny_config(epochs=1, patience=0, width=24), event_log)
    scratch_first = event_log.of(EpochMetrics)[0]
    event_log.events.clear()
    started_id, done = train_to_end(data_dir, "few", tiny_config(epochs=1, patience=0, width=24), event_log,
                                    start_from=base_id)
    started_first = event_log.of(EpochMetrics)[0]
    assert done.outcome == "completed"
    info = load_run(data_dir, started_id)
    assert info.started_from == base_id and load_run(data_dir, scratch_id).started_from is None
    # the base model's size and sound features, not the new run's own
    from sda_web.storage import read_json

    assert read_json(info.run_dir / "config.json")["width"] == 32
    assert read_json(info.run_dir / "features.json")["feature_spec"] == \
        read_json(load_run(data_dir, base_id).run_dir / "features.json")["feature_spec"]
    assert started_first.train_loss < scratch_first.train_loss  # it starts knowing sounds


def test_starting_from_a_model_that_is_not_there_is_one_clear_sentence(data_dir, dataset, event_log):
    from sda_web.training.runs import RunError

    with pytest.raises(RunError, match="no run called 'nope'"):
        TrainingRunner(data_dir, after_training=analyse_trained_run, in_process=True).start("tones", tiny_config(), event_log, start_from="nope")
    assert not list(data_dir.glob("runs/tones-*"))  # nothing was started


def test_the_complete_event_of_a_stopped_run_is_plain_data():
    import pickle

    event = TrainingCompleteEvent(outcome="stopped", epochs_done=9, total_epochs=50, best_val_loss=0.5,
                                  checkpoint_path=None, best_epoch=6, patience=3)
    assert pickle.loads(pickle.dumps(event)) == event


# ---- what the Train tab shows -------------------------------------------------------

def memorising_history():
    return [metrics(e, 1.0 / e ** 0.5, 0.5 + abs(e - 100) / 400) for e in range(1, 301)]


def test_the_chart_marks_where_memorising_began_and_the_stats_say_it(tmp_path):
    from starlette.testclient import TestClient

    from sda_web.web import fragments
    from sda_web.web.app import create_app
    from sda_web.web.view import RunView

    with TestClient(create_app(tmp_path)) as client:
        env = client.app.state.templates.env
        view = RunView(status="running", total_epochs=400, history=memorising_history())
        chart, stats = fragments.chart(env, view), fragments.stats(env, view)
        quiet = RunView(status="running", total_epochs=400, history=memorising_history()[:100])
        assert "memorising from epoch" not in fragments.chart(env, quiet)
        assert "memorise" not in fragments.stats(env, quiet)
        stopped = RunView(status="stopped", total_epochs=400, history=memorising_history()[:103], patience=3)
        banner = fragments.outcome(env, stopped)
    sign = memorisation_sign(view.history, 400)
    assert f"memorising from epoch {sign.began_epoch}" in chart
    assert "has started to memorise" in stats and f"from epoch {sign.best_epoch}" in stats
    assert "Stopped: no better for 3 epochs, at epoch 103 of 400" in banner and "epoch 100" in banner
