"""Training in its own process: same results, a clear end when it dies, and it never outlives its parent."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import training_helpers
import pytest
from sda_web.datasets import import_folder
from sda_web.generation.after_training import analyse_trained_run
from sda_web.training import EpochMetrics, RunStarted, TrainingRunner, get_latest_checkpoint, load_history, load_run
from sda_web.checkpoints import load_checkpoint
from training_helpers import finished, gone, new_training_children, training_children, wait_gone

pytestmark = pytest.mark.trains  # every test here trains a real model


def tiny_config(**overrides):
    return training_helpers.tiny_config(**{"checkpoint_every": 1, "preview_every": 100, **overrides})


def test_a_child_process_trains_exactly_as_a_thread_does(data_dir, dataset, event_log):
    losses = {}
    for in_process in (False, True):
        log = type(event_log)()
        runner = TrainingRunner(data_dir, after_training=analyse_trained_run, in_process=in_process)
        runner.start("tones", tiny_config(epochs=3), log)
        log.wait_for(lambda e: isinstance(e, RunStarted))
        if not in_process:
            pid = runner.worker_pid
            assert pid is not None and pid != os.getpid()
        else:
            assert runner.worker_pid is None
        done = log.wait_for(finished)
        assert done.outcome == "completed", done.error
        assert runner.wait(10) and not runner.is_running
        losses[in_process] = [(m.epoch, m.train_loss, m.val_loss) for m in log.of(EpochMetrics)]
        assert len(runner.epoch_timings) == 3  # timings come back from the child too
    assert losses[False] == losses[True]
    assert wait_gone(pid)


def test_a_killed_training_process_fails_the_run_clearly_and_it_resumes(data_dir, dataset, event_log):
    runner = TrainingRunner(data_dir, after_training=analyse_trained_run)
    run_id = runner.start("tones", tiny_config(epochs=200), event_log)
    event_log.wait_for(lambda e: isinstance(e, EpochMetrics) and e.epoch == 4)  # so epoch 3 is checkpointed
    pid = runner.worker_pid
    os.kill(pid, signal.SIGKILL)  # what the kernel's out-of-memory killer does
    done = event_log.wait_for(finished)
    assert done.outcome == "failed"
    assert "killed" in done.error and "out of memory" in done.error and "resume" in done.error
    assert done.epochs_done >= 3 and done.checkpoint_path
    assert not runner.is_running
    info = load_run(data_dir, run_id)
    assert info.status == "failed" and info.error == done.error
    saved = load_checkpoint(get_latest_checkpoint(info.run_dir))
    assert saved["epoch"] >= 3 and info.epochs_done == saved["epoch"]  # what a resume starts from

    again = type(event_log)()
    runner.resume(run_id, again, epochs=saved["epoch"] + 2)
    assert again.wait_for(lambda e: isinstance(e, RunStarted)).start_epoch == saved["epoch"]
    assert again.wait_for(finished).outcome == "completed"
    history = load_history(info.run_dir)
    assert [m.epoch for m in history] == list(range(1, saved["epoch"] + 3))
    assert [m.to_dict() for m in history[: saved["epoch"]]] == saved["history"]


def test_cancel_at_once_reaches_a_child_that_is_still_starting(data_dir, dataset, event_log):
    runner = TrainingRunner(data_dir, after_training=analyse_trained_run)
    runner.start("tones", tiny_config(epochs=200), event_log)
    assert runner.cancel()  # before the child has even imported torch
    done = event_log.wait_for(finished, timeout=60)
    assert done.outcome == "cancelled" and done.epochs_done < 200
    assert runner.wait(10)


PARENT = textwrap.dedent("""
    import queue, sys, time
    from sda_web.training import RunStarted, TrainingRunner, get_adaptive_config
    runner, events = TrainingRunner(sys.argv[1]), queue.Queue()  # killed before it ends: no analysis
    config = get_adaptive_config(6).with_overrides(epochs=500, width=32, latent_dim=16, batch_size=4, patience=0)
    runner.start("tones", config, events.put)
    while not isinstance(events.get(), RunStarted):
        pass
    print(runner.worker_pid, flush=True)
    time.sleep(600)
""")


def test_the_training_process_never_outlives_its_parent(data_dir, dataset, tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script), str(data_dir)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "SDA_THREADS": "1"})
    worker = int(parent.stdout.readline())
    try:
        assert not gone(worker)
        time.sleep(1.0)  # let it get into its work
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    assert wait_gone(worker, 10), "the training process was left running after its parent was killed"


def test_a_warm_process_waits_for_the_next_run_and_close_lets_it_go(data_dir, dataset, event_log):
    before = training_children()
    runner = TrainingRunner(data_dir, after_training=analyse_trained_run, keep_warm=True)
    runner.start("tones", tiny_config(epochs=2), event_log)
    event_log.wait_for(lambda e: isinstance(e, RunStarted))
    first = runner.worker_pid
    assert event_log.wait_for(finished).outcome == "completed"
    assert runner.wait(10)
    assert wait_gone(first)
    spares = new_training_children(before)
    assert len(spares) == 1  # started with the run, for the next one

    second = type(event_log)()
    run_id = runner.start("tones", tiny_config(epochs=2), second)
    second.wait_for(lambda e: isinstance(e, RunStarted))
    assert {runner.worker_pid} == spares  # the warm one took the run
    assert second.wait_for(finished).outcome == "completed"
    assert load_run(data_dir, run_id).status == "completed"
    assert runner.wait(10)
    assert wait_gone(min(spares))
    spares = new_training_children(before)
    assert len(spares) == 1
    runner.close()
    assert all(wait_gone(pid) for pid in spares), "close() left the warm process running"


def test_a_warm_process_that_died_is_replaced(data_dir, dataset, event_log):
    before = training_children()
    runner = TrainingRunner(data_dir, after_training=analyse_trained_run, keep_warm=True)
    runner.start("tones", tiny_config(epochs=1), event_log)
    assert event_log.wait_for(finished).outcome == "completed"
    runner.wait(10)
    (spare,) = new_training_children(before)
    os.kill(spare, signal.SIGKILL)
    assert wait_gone(spare)
    second = type(event_log)()
    runner.start("tones", tiny_config(epochs=1), second)
    done = second.wait_for(finished)
    assert done.outcome == "completed", done.error  # a fresh process, not a failed run
    runner.wait(10)
    runner.close()


def test_the_train_page_readies_a_process_and_shutdown_ends_it(data_dir, tone_folder):
    from starlette.testclient import TestClient

    from sda_web.web.app import create_app

    before = training_children()
    with TestClient(create_app(data_dir)) as client:
        assert client.get("/train").status_code == 200
        time.sleep(0.5)
        assert training_children() == before  # no dataset yet: nothing to train, nothing started
    import_folder(data_dir, tone_folder, name="tones")
    with TestClient(create_app(data_dir)) as client:
        assert client.get("/train").status_code == 200
        spares = new_training_children(before)
        assert len(spares) == 1
        client.get("/train")
        time.sleep(0.5)
        assert training_children() - before == spares  # one is enough, however often the page loads
    assert all(wait_gone(pid) for pid in spares), "the app's shutdown left its training process running"
