"""Two people, two browsers, one studio machine: runs queued from both pages train one after
another by themselves, and each page sees the queue change live, reorders and removes included."""
from __future__ import annotations

import pytest

from browser_helpers import ARTIFACTS, launched_chromium
from sda_web.audio.demo import write_demo_sounds
from sda_web.datasets import import_folder
from sda_web.training.queue import RunQueue
from sda_web.training.runs import list_runs
from server_helpers import Server, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]
FIRST_EPOCHS = 300  # about 40 s on 4 demo sounds: time for the clicks below while it trains


def queue_train(page, epochs: int, expect: str) -> None:
    page.fill("#f-epochs", str(epochs))
    if not page.locator("details.advanced").get_attribute("open"):
        page.locator("details.advanced > summary").click()
    page.fill("#f-patience", "0")
    page.locator("#train-controls .btn.primary").click()
    page.locator("#train-form, #train-message").get_by_text(expect).first.wait_for(timeout=30_000)


def waiting_epochs(page) -> list[str]:
    return [t.split(" · ")[1].split(", ")[1] for t in page.locator("#train-queue .queue-row.waiting .queue-what")
            .all_inner_texts()]


def test_runs_queued_from_two_browsers_train_in_turn_and_both_see_the_queue(tmp_path):
    folder = tmp_path / "sounds"
    write_demo_sounds(folder, count=4, seed=3)
    data = tmp_path / "data"
    import_folder(data, folder, name="demo")
    server = Server(data).start()
    try:
        with launched_chromium() as chromium:
            alice = chromium.new_context(viewport={"width": 1280, "height": 900}).new_page()
            bob = chromium.new_context(viewport={"width": 1280, "height": 900}).new_page()
            for page in (alice, bob):
                page.goto(f"{server.base}/train")
                page.locator(".train-page.live").wait_for(timeout=30_000)  # its live socket is open

            alice.fill("#f-epochs", str(FIRST_EPOCHS))
            alice.locator("details.advanced > summary").click()
            alice.fill("#f-patience", "0")
            alice.get_by_role("button", name="Train", exact=True).click()
            bob.get_by_role("button", name="Add to queue").wait_for(timeout=30_000)  # bob's page saw it start
            queue_train(bob, 5, "Queued, 1st, starts after demo")
            queue_train(alice, 6, "Queued, 2nd, starts after demo")
            queue_train(bob, 7, "Queued, 3rd, starts after demo")
            for page in (alice, bob):
                wait_for(lambda: waiting_epochs(page) == ["5 epochs", "6 epochs", "7 epochs"], "the queue on both pages", 20)
            alice.screenshot(path=str(ARTIFACTS / "queue-1-three-waiting.png"), full_page=True)

            bob.locator("#train-queue .queue-row.waiting").nth(2).get_by_role("button", name="Move to front").click()
            wait_for(lambda: waiting_epochs(alice) == ["7 epochs", "5 epochs", "6 epochs"], "bob's reorder on alice's page", 20)
            alice.locator("#train-queue .queue-row.waiting").nth(1).get_by_role("button", name="Remove").click()
            wait_for(lambda: waiting_epochs(bob) == ["7 epochs", "6 epochs"], "alice's removal on bob's page", 20)
            assert RunQueue(data).state().running[0].total_epochs == FIRST_EPOCHS, "the clicks took longer than the first run"
            bob.screenshot(path=str(ARTIFACTS / "queue-2-reordered.png"), full_page=True)

            # no more clicks: the rest train one after another by themselves
            wait_for(lambda: not RunQueue(data).state().entries, "the queue to run to its end", 180)
            for page in (alice, bob):
                wait_for(lambda: page.locator("#train-queue .queue-ended").count() == 3, "three ended runs", 20)
                assert page.locator("#train-queue .queue-row").count() == 0
            ended = bob.locator("#train-queue .queue-ended").all_inner_texts()  # newest first
            assert [t.rsplit(" of ", 1)[1].rstrip(".") for t in ended] == ["6", "7", str(FIRST_EPOCHS)]  # bob's
            # reorder, without alice's removed 5
            assert all("completed" in t for t in ended)
            bob.screenshot(path=str(ARTIFACTS / "queue-3-done.png"), full_page=True)
        runs = list_runs(data)
        assert sorted(r.total_epochs for r in runs) == [6, 7, FIRST_EPOCHS]
        assert all(r.status == "completed" for r in runs)
    finally:
        assert "Traceback" not in server.stop()
