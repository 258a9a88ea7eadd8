"""A smaller bench/live_load.py as a test: 30 clients coming and going (and 5 that never read)
during a real training run. Everyone ends with the same page; the hub lets go of every client and task."""
from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_bench():
    spec = importlib.util.spec_from_file_location("live_load", ROOT / "bench" / "live_load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.trains
@pytest.mark.timeout(120)
def test_thirty_clients_churning_through_a_real_run(tmp_path):
    bench = load_bench()
    bench.STAY_S, bench.AWAY_S = (0.3, 2.0), (0.05, 0.5)  # churn harder: the run is short
    data = tmp_path / "data"
    bench.make_dataset(data, count=4)
    server, port = bench.start_server(data)
    base = f"http://127.0.0.1:{port}"

    async def scenario():
        import httpx

        async with httpx.AsyncClient(timeout=60) as http:
            before = await bench.settle(http, base)
            crowded = await bench.crowded_run(http, base, port, epochs=3, clients=30, silent=5, seed=1)
            after = await bench.settle(http, base)
        return before, crowded, after

    try:
        before, crowded, after = asyncio.run(scenario())
    finally:
        bench.stop_server(server)
    tally = crowded["tally"]
    print(f"\n{tally.connects} connects, {tally.abrupt} without a goodbye, {tally.messages} messages, "
          f"{crowded['steps_per_s']:.2f} steps/s; tasks {before['tasks']} -> {crowded['peak']['tasks']} -> "
          f"{after['tasks']}; RSS {before['rss_kb'] // 1024} -> {after['rss_kb'] // 1024} MB")
    assert tally.errors == []
    assert tally.connects > 30 and tally.abrupt > 0
    assert crowded["agree"] == crowded["watchers"] == 25, crowded["differ"][:1]
    reference = crowded["reference"]
    assert "Training complete: 3 epochs" in reference["train-outcome"] and len(reference["previews"]) >= 1
    assert after["clients"] == 0 and after["pending_frames"] == 0
    assert after["tasks"] <= before["tasks"]
