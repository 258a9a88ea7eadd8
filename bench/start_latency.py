"""How long a musician waits after pressing Train (or Resume) before the first step.

    .venv/bin/python bench/start_latency.py [--repeats 3]

Training runs in a child process (its own GIL; see sda_web/training/worker.py).
A cold child imports torch first; the web app keeps a warm one ready after each
run. Side by side, from one run of this script (8 short files, 1 torch thread):

* cold:   a fresh training process per run (the CLI, and the web app's first run);
* warm:   a process started ahead of time, as the web app keeps one after each run;
* thread: the earlier design, a thread in a process that has already imported torch.

Each figure is the median over --repeats runs of start() -> first StepProgress.
"""
from __future__ import annotations

import argparse
import os
import queue
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("SDA_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _bench_common import make_dataset  # noqa: E402


def time_to_first_step(runner, config) -> float:
    from sda_web.training import StepProgress, TrainingCompleteEvent

    events: queue.Queue = queue.Queue()
    t0 = time.perf_counter()
    runner.start("bench", config, events.put)
    first = None
    while True:
        event = events.get(timeout=300)
        if isinstance(event, StepProgress) and first is None:
            first = time.perf_counter() - t0
            runner.cancel()
        elif isinstance(event, TrainingCompleteEvent):
            assert event.outcome in ("cancelled", "completed"), event.error
            break
    runner.wait(60)
    return first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from sda_web.generation.after_training import analyse_trained_run
    from sda_web.training import TrainingRunner, get_adaptive_config

    data_dir = Path(tempfile.mkdtemp(prefix="sda-start-")) / "data"
    make_dataset(data_dir)
    config = get_adaptive_config(8).with_overrides(epochs=50)

    cold = TrainingRunner(data_dir, after_training=analyse_trained_run)
    warm = TrainingRunner(data_dir, after_training=analyse_trained_run, keep_warm=True)
    time_to_first_step(warm, config)  # its first run is cold; the ones after it are warm
    thread = TrainingRunner(data_dir, after_training=analyse_trained_run, in_process=True)
    time_to_first_step(thread, config)  # imports torch into this process, as a server's first run did
    times = {"cold": [], "warm": [], "thread": []}
    for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits all three alike
        times["cold"].append(time_to_first_step(cold, config))
        time.sleep(10)  # let the warm spare finish its imports, as it would while the user listens
        times["warm"].append(time_to_first_step(warm, config))
        times["thread"].append(time_to_first_step(thread, config))
    warm.close()

    median = {k: statistics.median(v) for k, v in times.items()}
    print(f"time from start() to the first training step, median of {args.repeats} (8 files, 1 torch thread)")
    print(f"{'':36}{'seconds':>9}{'vs thread':>11}")
    labels = {"cold": "cold training process", "warm": "warm training process (web app)",
              "thread": "thread, torch already imported"}
    for key, label in labels.items():
        runs = ", ".join(f"{t:.2f}" for t in times[key])
        print(f"  {label:34}{median[key]:9.2f}{median[key] / median['thread']:10.2f}x   ({runs})")


if __name__ == "__main__":
    main()
