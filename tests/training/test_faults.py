"""Faults: kill -9 mid-run, kill during a checkpoint write, a disk that fills up."""
import errno
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from sda_web.datasets import import_folder
from sda_web.training import (
    EpochMetrics, TrainingRunner, get_adaptive_config, get_latest_checkpoint, list_runs,
    load_history, load_run,
)
from sda_web.generation.after_training import analyse_trained_run
from sda_web.checkpoints import load_checkpoint
from training_helpers import finished, training_children, wait_gone

pytestmark = pytest.mark.trains  # every test here trains a real model


def small_config(**overrides):
    base = dict(epochs=40, width=32, latent_dim=16, batch_size=4, checkpoint_every=1, preview_every=20, patience=0)
    base.update(overrides)
    return get_adaptive_config(6).with_overrides(**base)


def test_kill_9_mid_run_shows_interrupted_and_resumes_with_history(tmp_path, tone_folder, event_log):
    data = tmp_path / "data"
    env = {**os.environ, "SDA_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "sda_web.cli", "train", str(tone_folder), "--epochs", "400",
                             "--data-dir", str(data)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            runs = list_runs(data)
            if runs and runs[0].epochs_done >= 3:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the run never checkpointed 3 epochs")
        workers = training_children(proc.pid)
        assert len(workers) == 1
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert all(wait_gone(pid) for pid in workers), "the training process outlived the killed `sda train`"

    run = list_runs(data)[0]
    assert run.status == "interrupted" and run.has_checkpoint  # run.json said "running"; nobody owns it now
    stale = run.run_dir / "checkpoints" / ".latest.pt.abc.tmp"  # what a kill in mid-write leaves
    stale.write_bytes(b"half a checkpoint")
    saved = load_checkpoint(get_latest_checkpoint(run.run_dir))
    saved_epoch = saved["epoch"]
    assert saved_epoch >= 3

    # The web app offers Resume Training for it.
    from starlette.testclient import TestClient

    from sda_web.web.app import create_app

    with TestClient(create_app(data)) as client:
        page = client.get("/train").text
        assert "interrupted" in page.lower() and "Resume" in page

    runner = TrainingRunner(data, after_training=analyse_trained_run)
    runner.resume(run.run_id, event_log, epochs=saved_epoch + 2)
    done = event_log.wait_for(finished)
    assert done.outcome == "completed", done.error
    history = load_history(run.run_dir)
    assert [m.epoch for m in history] == list(range(1, saved_epoch + 3))
    assert [m.to_dict() for m in history[:saved_epoch]] == saved["history"]
    assert event_log.of(EpochMetrics)[0].epoch == saved_epoch + 1
    assert not stale.exists()


WRITER = textwrap.dedent("""
    import sys, torch
    from pathlib import Path
    from sda_web.checkpoints import save_checkpoint
    path = Path(sys.argv[1])
    big = torch.randn(2_000_000)
    n = 0
    print("ready", flush=True)
    while True:
        n += 1
        w = big + n
        save_checkpoint(path, {"model": {"w": w}, "epoch": n, "sum": float(w.double().sum())})
""")


def test_kill_during_checkpoint_writes_never_leaves_a_broken_checkpoint(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    path = tmp_path / "checkpoints" / "latest.pt"
    last_epoch = 0
    for delay in (0.05, 0.13, 0.3, 0.55, 0.21):
        proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if path.exists():
            payload = load_checkpoint(path)  # never raises: the file is always a whole checkpoint
            assert float(payload["model"]["w"].double().sum()) == payload["sum"]  # and never a mix of two writes
            last_epoch = max(last_epoch, payload["epoch"])
    assert last_epoch >= 1, "no checkpoint was ever completed; the test did not exercise anything"


def test_disk_full_fails_clearly_and_keeps_what_was_saved(data_dir, tone_folder, event_log, monkeypatch):
    import_folder(data_dir, tone_folder, name="tones")
    real_fsync = os.fsync
    writes = {"n": 0}

    def fsync_until_full(fd):
        writes["n"] += 1
        if writes["n"] > 12:  # a few epochs of checkpoints, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_until_full)
    runner = TrainingRunner(data_dir, after_training=analyse_trained_run, in_process=True)  # the patch must reach the engine
    run_id = runner.start("tones", small_config(), event_log)
    done = event_log.wait_for(finished)
    monkeypatch.setattr(os, "fsync", real_fsync)

    assert done.outcome == "failed"
    assert "No space left on device" in done.error and "disk space" in done.error
    info = load_run(data_dir, run_id)
    payload = load_checkpoint(get_latest_checkpoint(info.run_dir))
    assert 1 <= payload["epoch"] < 40
    assert [m["epoch"] for m in payload["history"]] == list(range(1, payload["epoch"] + 1))
    leftovers = [p.name for p in info.run_dir.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    # And the run resumes from what was saved once there is space again.
    again = type(event_log)()
    runner.resume(run_id, again, epochs=payload["epoch"] + 1)
    assert again.wait_for(finished).outcome == "completed"


@pytest.mark.timeout(240)
def test_kill_9_of_the_server_mid_run_then_restart_resumes_from_the_page(tmp_path):
    import httpx

    from conftest_web import first_answer, free_port, launch, make_dataset, stop

    data = tmp_path / "data"
    make_dataset(data, "tiny", count=4, tmp=tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = launch(data, port)
    try:
        first_answer(port, "/train")
        form = {"preset": "balanced", "epochs": "400", "learning_rate": "0.001", "dropout": "0.1",
                "weight_decay": "0.0001", "kl_weight_max": "0.1"}
        assert httpx.post(f"{base}/train/start", data=form, timeout=30).status_code == 303
        deadline = time.monotonic() + 120
        while not (list_runs(data) and list_runs(data)[0].epochs_done >= 2):
            assert time.monotonic() < deadline, "the run never checkpointed"
            time.sleep(0.1)
        workers = training_children(server.pid)
        assert workers  # the run's process (and perhaps a warm one the Train page asked for)
    finally:
        server.send_signal(signal.SIGKILL)
        server.communicate()
    assert all(wait_gone(pid) for pid in workers), "a training process outlived the killed server"

    run = list_runs(data)[0]
    saved = load_checkpoint(get_latest_checkpoint(run.run_dir))
    server = launch(data, port)
    try:
        first_answer(port, "/train")
        page = httpx.get(f"{base}/train", timeout=10).text
        assert "Interrupted" in page and "Resume Training" in page and f'value="{run.run_id}"' in page
        r = httpx.post(f"{base}/train/resume", data={"run_id": run.run_id, **form}, timeout=30)
        assert r.status_code in (200, 303), r.text
        deadline = time.monotonic() + 120
        while load_run(data, run.run_id).epochs_done < saved["epoch"] + 1:
            assert time.monotonic() < deadline, "the resumed run never checkpointed"
            time.sleep(0.1)
        httpx.post(f"{base}/train/cancel", timeout=30)
        deadline = time.monotonic() + 60
        while load_run(data, run.run_id).status == "running":
            assert time.monotonic() < deadline, "cancel did not end the run"
            time.sleep(0.1)
    finally:
        out = stop(server)
    assert "Traceback" not in out, out
    history = load_history(run.run_dir)
    epochs = [m.epoch for m in history]
    assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) > saved["epoch"]
    assert [m.to_dict() for m in history[: saved["epoch"]]] == saved["history"]
