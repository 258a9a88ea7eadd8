"""How long the machine sits idle between two queued runs: one run's final event to the next
run's first epoch event, side by side with and without the warm training process.

The whole server path: create_app with its queue runner and live hub (under Starlette's
TestClient, so its lifespan runs), runs queued over HTTP as Train does, the real engine
in its child processes. Each mode queues RUNS short runs on the same few demo sounds and
times every hand-over from the hub's own events:

    end -> started   the final event of run k to RunStarted of run k+1 (queue + process hand-over)
    started -> epoch RunStarted to the first EpochMetrics (features + the first epoch itself)

"warm" is the product (keep_warm: the next process imports torch while a run trains);
"cold" starts a fresh process per run. One torch thread. Not a pass/fail test.

    python bench/queue_handoff.py [--runs 4] [--files 4]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FORM = {"preset": "balanced", "learning_rate": "0.001", "dropout": "0.1", "weight_decay": "0.0001",
        "kl_weight_max": "0.1", "patience": "0"}


def measure(data: Path, warm: bool, runs: int) -> list[dict]:
    from starlette.testclient import TestClient

    from sda_web.generation.after_training import analyse_trained_run
    from sda_web.training import TrainingRunner
    from sda_web.training.events import EpochMetrics, RunStarted, TrainingCompleteEvent
    from sda_web.training.queue import RunQueue
    from sda_web.web.app import create_app

    app = create_app(data, runners={"cpu": TrainingRunner(data, after_training=analyse_trained_run, keep_warm=warm)})
    hub = app.state.hub
    marks: list[tuple[str, int, float]] = []  # (what, token, when)
    process = hub.process

    def timed(batch):
        now = time.perf_counter()
        for token, event in batch:
            if isinstance(event, RunStarted):
                marks.append(("started", token, now))
            elif isinstance(event, EpochMetrics) and event.epoch == 1:
                marks.append(("epoch", token, now))
            elif isinstance(event, TrainingCompleteEvent):
                marks.append(("end", token, now))
        return process(batch)

    hub.process = timed
    with TestClient(app) as client:
        if warm:
            client.get("/train")  # the page readies a process, as a visitor's first look does
            time.sleep(8)
        for k in range(runs):
            r = client.post("/train/start", data={**FORM, "epochs": str(3 + k)}, headers={"HX-Request": "true"})
            assert r.status_code in (200, 202), r.text
        deadline = time.monotonic() + 600
        while RunQueue(data).state().entries or sum(m[0] == "end" for m in marks) < runs:
            assert time.monotonic() < deadline, "the queue did not finish"
            time.sleep(0.05)
    tokens = sorted({m[1] for m in marks})
    at = {(what, token): when for what, token, when in marks}
    return [{"end_to_started": at[("started", b)] - at[("end", a)],
             "started_to_epoch": at[("epoch", b)] - at[("started", b)],
             "end_to_epoch": at[("epoch", b)] - at[("end", a)]}
            for a, b in zip(tokens, tokens[1:])]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--files", type=int, default=4)
    args = parser.parse_args()

    import os

    os.environ.setdefault("SDA_THREADS", "1")
    from sda_web.audio.demo import write_demo_sounds
    from sda_web.datasets import import_folder

    results = {}
    for mode in ("warm", "cold"):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "sounds"
            write_demo_sounds(folder, count=args.files, seed=3)
            data = Path(tmp) / "data"
            import_folder(data, folder, name="demo")
            results[mode] = measure(data, mode == "warm", args.runs)

    print(f"queue hand-over, {args.runs} runs of 3+ epochs on {args.files} demo sounds, median of "
          f"{args.runs - 1} hand-overs (seconds):")
    print(f"{'':18}{'warm':>8}{'cold':>8}{'cold/warm':>11}")
    for key in ("end_to_started", "started_to_epoch", "end_to_epoch"):
        warm = statistics.median(h[key] for h in results["warm"])
        cold = statistics.median(h[key] for h in results["cold"])
        print(f"{key.replace('_', ' '):18}{warm:8.3f}{cold:8.3f}{cold / warm:10.1f}x")
    worst = max(h["end_to_epoch"] for h in results["warm"])
    print(f"warm, worst hand-over end -> first epoch: {worst:.3f} s (target under 1 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
