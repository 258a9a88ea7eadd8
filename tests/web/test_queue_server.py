"""The queue with the real engine behind a real `sda serve`: a kill -9 and a restart keep the
queued runs and leave the interrupted one resumable; `sda train` on the server's data folder
joins its queue and follows its run; `sda queue` lists what trains and waits."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sda_web.audio.demo import write_demo_sounds
from sda_web.datasets import import_folder
from sda_web.training.queue import RunQueue
from sda_web.training.runs import list_runs, load_run
from server_helpers import ENV, Server, wait_for
from training_helpers import wait_gone

pytestmark = [pytest.mark.trains, pytest.mark.timeout(240)]


@pytest.fixture
def data(tmp_path):
    folder = tmp_path / "sounds"
    write_demo_sounds(folder, count=4, seed=3)
    data = tmp_path / "data"
    import_folder(data, folder, name="demo")
    return data


def queue_of(data: Path):
    return RunQueue(data).state()


def test_a_kill_minus_9_keeps_the_queue_and_the_interrupted_run_resumes_after_a_restart(data):
    server = Server(data).start()
    assert server.train(60).status_code == 200
    for epochs in (2, 3):
        r = server.train(epochs)
        assert r.status_code == 202 and "Queued," in r.text
    wait_for(lambda: queue_of(data).running[0].run_id, "the first run's id")
    run_id = queue_of(data).running[0].run_id
    wait_for(lambda: (data / "runs" / run_id / "checkpoints" / "latest.pt").exists(), "a first checkpoint")
    worker = _training_child(server.proc.pid)
    server.kill()
    assert worker is None or wait_gone(worker, 10), "the training process outlived the killed server"

    state = queue_of(data)
    assert [e.total_epochs for e in state.waiting] == [2, 3]  # nothing queued was lost

    server.start()
    wait_for(lambda: load_run(data, run_id).status == "interrupted", "the killed run to show as interrupted")
    info = load_run(data, run_id)
    assert info.has_checkpoint and 0 < info.epochs_done < 60
    wait_for(lambda: [e.total_epochs for e in queue_of(data).running] == [2], "the queue to go on by itself")
    offer = f"Interrupted: <strong>demo</strong> at epoch {info.epochs_done} of 60 ({run_id})"
    wait_for(lambda: offer in server.page(), "the queue panel to offer the interrupted run", 20)
    assert f'name="run_id" value="{run_id}"' in server.page()
    r = server.post("/train/resume", {"run_id": run_id})
    assert r.status_code in (200, 202), r.text
    wait_for(lambda: not queue_of(data).entries, "every run, the resumed one included, to finish", 200)
    runs = {r.total_epochs: r for r in list_runs(data)}
    assert runs[60].run_id == run_id and runs[60].status == "completed" and runs[60].epochs_done == 60
    assert runs[2].status == runs[3].status == "completed"
    assert "Traceback" not in server.stop()


def test_a_server_stopped_on_purpose_continues_its_run_first_when_it_starts_again(data):
    server = Server(data).start()
    assert server.train(60).status_code == 200
    assert server.train(2).status_code == 202
    wait_for(lambda: queue_of(data).running and queue_of(data).running[0].run_id, "the first run's id")
    run_id = queue_of(data).running[0].run_id
    wait_for(lambda: (data / "runs" / run_id / "checkpoints" / "latest.pt").exists(), "a first checkpoint")
    assert "Traceback" not in server.stop()  # SIGTERM: the run is cancelled with a checkpoint

    state = queue_of(data)
    assert [(e.kind, e.run_id) for e in state.waiting][0] == ("resume", run_id)  # back at the front
    assert [e.total_epochs for e in state.waiting][1:] == [2]
    stopped_at = load_run(data, run_id).epochs_done
    server.start()
    wait_for(lambda: not queue_of(data).entries, "the resumed run and the queued one to finish", 200)
    info = load_run(data, run_id)
    assert info.status == "completed" and info.epochs_done == 60 and stopped_at < 60
    assert "Traceback" not in server.stop()


def test_sda_train_joins_the_servers_queue_and_sda_queue_lists_it(data):
    server = Server(data).start()
    try:
        assert server.train(8).status_code == 200
        cli = subprocess.Popen([sys.executable, "-m", "sda_web.cli", "train", "demo", "--epochs", "2",
                                "--data-dir", str(data)], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
        wait_for(lambda: len(queue_of(data).entries) == 2, "the CLI's run to join the queue", 60)
        listing = json.loads(subprocess.run([sys.executable, "-m", "sda_web.cli", "queue", "--json", "--data-dir",
                                             str(data)], env=ENV, capture_output=True, text=True, check=True).stdout)
        assert listing["server_running"] is True
        assert [(e["state"], e["total_epochs"]) for e in listing["entries"]] == [("running", 8), ("queued", 2)]
        assert listing["entries"][1]["requested_by"] == f"sda train (pid {cli.pid})"
        out, _ = cli.communicate(timeout=200)
        assert cli.returncode == 0, out
        assert "A server is running on this data folder: the run joins its training queue." in out
        assert "Queued, 1st, starts after demo" in out
        assert "Epoch 2/2" in out and "Finished 2/2 epochs" in out
        cli_run = next(r for r in list_runs(data) if r.total_epochs == 2)
        assert cli_run.status == "completed"

        # Ctrl-C while it waits takes it out of the queue, and nothing trains
        assert server.train(8).status_code == 200
        waiting = subprocess.Popen([sys.executable, "-m", "sda_web.cli", "train", "demo", "--epochs", "3",
                                    "--data-dir", str(data)], env=ENV, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        wait_for(lambda: len(queue_of(data).waiting) == 1, "the second CLI run to be queued", 60)
        waiting.send_signal(signal.SIGINT)
        out, _ = waiting.communicate(timeout=60)
        assert waiting.returncode == 130 and "Taken out of the queue; nothing was trained." in out
        assert not queue_of(data).waiting
    finally:
        assert "Traceback" not in server.stop()


def _training_child(parent: int) -> int | None:
    """The server's training process that has a run (the one with the most CPU time)."""
    children = []
    for task in os.listdir(f"/proc/{parent}/task"):
        try:
            with open(f"/proc/{parent}/task/{task}/children") as f:
                children += [int(p) for p in f.read().split()]
        except FileNotFoundError:
            continue
    busiest, most = None, -1
    for pid in children:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        cpu = int(fields[11]) + int(fields[12])
        if cpu > most:
            busiest, most = pid, cpu
    return busiest
