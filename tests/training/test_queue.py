"""The training queue: several people press Train on one machine and every run trains in turn.

The durable queue file itself (order, removing, moving to the front, a double click, several
processes writing at once), the start estimates, and the server's queue runner with scripted
runners standing in for the engine: one run per device (two fake GPUs), the next starting by
itself when one ends, and a queued run whose dataset was deleted failing with one sentence
while the queue goes on."""
from __future__ import annotations

import multiprocessing
import re

import pytest
from starlette.testclient import TestClient

from conftest_web import HX, ScriptedRunner, complete, make_dataset, started
from server_helpers import wait_for
from sda_web.training import get_adaptive_config
from sda_web.training.queue import ExecutorLock, QueueError, RunQueue, executor_running
from sda_web.training.queue_estimates import about, start_estimates
from sda_web.training.runner import plan_new_run
from sda_web.web.app import create_app

pytestmark = pytest.mark.timeout(60)
FORM = {"preset": "balanced", "learning_rate": "0.001", "dropout": "0.1", "weight_decay": "0.0001",
        "kl_weight_max": "0.1"}


def config(epochs: int) -> dict:
    return get_adaptive_config(5).with_overrides(epochs=epochs).to_dict()


def add(queue: RunQueue, epochs: int, dataset: str = "tones", who: str = "10.0.0.2"):
    return queue.add(kind="new", dataset=dataset, requested_by=who, config=config(epochs))


# ---- the queue file ------------------------------------------------------------------

def test_runs_wait_in_order_and_can_be_removed_or_moved_to_the_front(tmp_path):
    queue = RunQueue(tmp_path)
    a, b, c = add(queue, 3), add(queue, 4), add(queue, 5)
    assert queue.claim_next("cpu").entry_id == a.entry_id
    state = queue.state()
    assert [e.entry_id for e in state.waiting] == [b.entry_id, c.entry_id]
    assert state.position(c.entry_id) == 2
    queue.move_to_front(c.entry_id)
    assert [e.entry_id for e in queue.state().waiting] == [c.entry_id, b.entry_id]
    assert [e.entry_id for e in queue.state().running] == [a.entry_id]  # the front of the waiting line, not ahead of it
    queue.remove(b.entry_id)
    assert [e.entry_id for e in queue.state().waiting] == [c.entry_id]
    with pytest.raises(QueueError, match="training now; cancel it instead"):
        queue.remove(a.entry_id)
    with pytest.raises(QueueError, match="no longer in the queue"):
        queue.remove(b.entry_id)
    queue.finished(a.entry_id)
    assert queue.claim_next("cpu").entry_id == c.entry_id


def test_the_same_request_twice_is_refused_and_a_resume_is_queued_once(tmp_path):
    queue = RunQueue(tmp_path)
    add(queue, 3)
    with pytest.raises(QueueError, match=r"The same run on “tones” is already queued \(1st\); nothing was added."):
        add(queue, 3, who="10.0.0.9")
    add(queue, 4)  # a different run is fine
    queue.add(kind="resume", dataset="tones", requested_by="x", run_id="tones-1")
    with pytest.raises(QueueError, match="Run 'tones-1' is already queued"):
        queue.add(kind="resume", dataset="tones", requested_by="y", run_id="tones-1", epochs=50)


def test_a_restart_keeps_the_waiting_runs_and_drops_the_one_that_was_training(tmp_path):
    queue = RunQueue(tmp_path)
    a, b, c = add(queue, 3), add(queue, 4), add(queue, 5)
    queue.claim_next("cpu")
    queue.started(a.entry_id, "tones-1")
    dropped = RunQueue(tmp_path).recover()  # what the next server does first
    assert [e.run_id for e in dropped] == ["tones-1"]
    assert [e.entry_id for e in RunQueue(tmp_path).state().waiting] == [b.entry_id, c.entry_id]


def test_a_damaged_queue_file_reads_as_empty_and_is_rewritten(tmp_path):
    (tmp_path / "queue.json").write_text("{not json")
    queue = RunQueue(tmp_path)
    assert queue.state().entries == []
    add(queue, 3)
    assert len(RunQueue(tmp_path).state().entries) == 1


def _add_many(folder: str, who: str, count: int) -> None:
    queue = RunQueue(folder)
    for i in range(count):
        add(queue, 10 + i, who=who, dataset=who)


def test_processes_adding_at_once_lose_nothing(tmp_path):
    workers = [multiprocessing.get_context("spawn").Process(target=_add_many, args=(str(tmp_path), f"p{i}", 15))
               for i in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    entries = RunQueue(tmp_path).state().entries
    assert len(entries) == 45
    for who in ("p0", "p1", "p2"):  # each process's runs keep their own order
        mine = [e.total_epochs for e in entries if e.requested_by == who]
        assert mine == list(range(10, 25))


def test_only_one_server_executes_a_folder_and_a_killed_one_lets_go(tmp_path):
    first, second = ExecutorLock(tmp_path), ExecutorLock(tmp_path)
    assert not executor_running(tmp_path)
    assert first.acquire()
    assert executor_running(tmp_path) and not second.acquire()
    first.release()
    assert not executor_running(tmp_path) and second.acquire()
    second.release()


# ---- estimates ---------------------------------------------------------------------------

def test_start_estimates_play_the_queue_forward_on_each_device(tmp_path):
    queue = RunQueue(tmp_path)
    a, b, c, d = add(queue, 3), add(queue, 4), add(queue, 5), add(queue, 6)
    queue.claim_next("cuda:0")
    state = queue.state()
    durations = {b.entry_id: 100.0, c.entry_id: 50.0, d.entry_id: 10.0}
    one = start_estimates(state, 1, {a.entry_id: 30.0}, durations)
    assert one == {b.entry_id: 30.0, c.entry_id: 130.0, d.entry_id: 180.0}
    two = start_estimates(state, 2, {a.entry_id: 30.0}, durations)  # the second GPU is free now
    assert two == {b.entry_id: 0.0, c.entry_id: 30.0, d.entry_id: 80.0}
    unknown = start_estimates(state, 1, {a.entry_id: None}, durations)
    assert set(unknown.values()) == {None}
    assert about(200) == "about 3 min" and about(20) == "in under a minute" and about(None) == ""


# ---- the server's queue runner --------------------------------------------------------------

class DeviceRunner(ScriptedRunner):
    """A scripted runner for one device that checks what the real one checks before it starts
    (plan_new_run: the dataset must still be there)."""

    def __init__(self, data_dir, device: str):
        super().__init__()
        self.data_dir, self.device, self.run_id = data_dir, device, None
        self.devices_asked: list[str] = []

    @property
    def current_run_id(self):
        return self.run_id if self._running else None

    def start(self, dataset, config, callback, device="auto", start_from=None):
        plan_new_run(self.data_dir, dataset, config, start_from)
        super().start(dataset, config, callback, device, start_from)
        self.devices_asked.append(device)
        self.run_id = f"{dataset}-{len(self.started)}-{self.device}"
        return self.run_id

    def finish(self, outcome: str = "completed"):
        run_id = self.run_id
        self.emit(started(run_id=run_id, dataset=self.started[-1][0], total=3),
                  complete(outcome=outcome, epochs=3, total=3))


@pytest.fixture
def two_gpus(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    make_dataset(data, "tones", count=3, tmp=tmp_path)
    make_dataset(data, "other", count=2, tmp=tmp_path)
    runners = {"cuda:0": DeviceRunner(data, "cuda:0"), "cuda:1": DeviceRunner(data, "cuda:1")}
    with TestClient(create_app(data, runners=runners)) as client:
        yield client, runners, data


def test_two_gpus_train_two_runs_at_once_and_the_third_takes_the_first_free_one(two_gpus):
    client, runners, _ = two_gpus
    answers = [client.post("/train/start", data={**FORM, "epochs": str(e)}, headers=HX) for e in (3, 4, 5)]
    assert [a.status_code for a in answers] == [200, 200, 202]
    assert "Queued, 1st, starts after tones" in answers[2].text
    assert [r.devices_asked for r in runners.values()] == [["cuda:0"], ["cuda:1"]]  # one run per device
    page = client.get("/train").text
    assert "training on cuda:0" in page and "training on cuda:1" in page
    runners["cuda:1"].finish()
    wait_for(lambda: len(runners["cuda:1"].started) == 2, "the third run to start on the freed GPU")
    assert runners["cuda:1"].started[-1][1].epochs == 5 and len(runners["cuda:0"].started) == 1
    runners["cuda:0"].finish()
    runners["cuda:1"].finish()
    wait_for(lambda: not RunQueue(client.app.state.data_dir).state().entries, "the queue to empty")
    assert re.search(r"Ended: <strong>tones</strong> \(for [^)]+\), completed", client.get("/train").text)


def test_a_queued_run_whose_dataset_was_deleted_fails_in_one_sentence_and_the_queue_goes_on(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("tones", "other"):
        make_dataset(data, name, count=2, tmp=tmp_path)
    runner = DeviceRunner(data, "cpu")
    with TestClient(create_app(data, runners={"cpu": runner})) as client:
        from sda_web.web.selection import store_selection

        assert client.post("/train/start", data={**FORM, "epochs": "3"}, headers=HX).status_code == 200
        store_selection(data, "other")
        assert client.post("/train/start", data={**FORM, "epochs": "3"}, headers=HX).status_code == 202
        store_selection(data, "tones")
        assert client.post("/train/start", data={**FORM, "epochs": "4"}, headers=HX).status_code == 202
        r = client.post("/data/datasets/other/delete", headers=HX)  # only queued, not training: it may go
        assert r.status_code == 200
        runner.finish()
        wait_for(lambda: len(runner.started) == 2, "the run after the failed one to start")
        assert runner.started[-1][0] == "tones" and runner.started[-1][1].epochs == 4
        page = client.get("/train").text
        assert "“other” (for testclient) could not start: " in page and "other" in page
        failure = RunQueue(data).state().failures[-1]
        assert failure.dataset == "other" and failure.error.endswith(".") and "other" in failure.error
        runner.finish()


def test_the_queue_panel_lets_a_viewer_remove_and_reorder_without_javascript(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    make_dataset(data, "tones", count=2, tmp=tmp_path)
    runner = DeviceRunner(data, "cpu")
    with TestClient(create_app(data, runners={"cpu": runner})) as client:
        for epochs in (3, 4, 5, 6):
            client.post("/train/start", data={**FORM, "epochs": str(epochs)}, follow_redirects=False)
        waiting = RunQueue(data).state().waiting
        assert [e.total_epochs for e in waiting] == [4, 5, 6]
        page = client.get("/train").text
        assert page.count('class="queue-row waiting"') == 3 and "3rd" in page
        r = client.post(f"/train/queue/{waiting[2].entry_id}/front", follow_redirects=False)
        assert r.status_code == 303
        r = client.post(f"/train/queue/{waiting[0].entry_id}/remove", follow_redirects=False)
        assert r.status_code == 303
        assert [e.total_epochs for e in RunQueue(data).state().waiting] == [6, 5]
        r = client.post(f"/train/queue/{waiting[0].entry_id}/remove", headers=HX)
        assert r.status_code == 409 and "That run is no longer in the queue." in r.text
        runner.finish()
        wait_for(lambda: len(runner.started) == 2, "the next run")
        assert runner.started[-1][1].epochs == 6
        runner.finish()
        wait_for(lambda: len(runner.started) == 3, "the last run")
        runner.finish()
