"""Shared test fixtures: real audio files written by the tests, tiny configs."""
from __future__ import annotations

import os
import queue
import threading

os.environ.setdefault("SDA_THREADS", "1")  # 2 threads on a busy 2-core box ran 3-4x slower

import numpy as np
import pytest
import soundfile as sf

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a hard dependency
    pass


def write_tone_set(folder, count: int = 6, sample_rate: int = 24000, seconds: float = 1.5, seed: int = 0):
    """`count` varied, non-silent WAVs: decaying tones with noise, different pitches and lengths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        length = int(sample_rate * seconds * (0.6 + 0.8 * (i % 3) / 2))
        t = np.arange(length) / sample_rate
        freq = 110 * 2 ** (i * 7 / 12)
        env = np.exp(-t * (1.5 + i))
        wave = 0.5 * env * np.sin(2 * np.pi * freq * t) + 0.05 * (i % 2) * rng.standard_normal(length) * env
        path = folder / f"tone_{i:02d}.wav"
        sf.write(path, wave.astype(np.float32), sample_rate)
        paths.append(path)
    return paths


@pytest.fixture
def tone_folder(tmp_path):
    folder = tmp_path / "tones"
    write_tone_set(folder)
    return folder


@pytest.fixture
def data_dir(tmp_path):
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def data(data_dir):
    """The same empty data directory, under the short name the web tests use."""
    return data_dir


class EventLog:
    """Collects runner events from the training thread; lets a test wait for one."""

    def __init__(self):
        self.events = []
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()

    def __call__(self, event) -> None:
        with self._lock:
            self.events.append(event)
        self._queue.put(event)

    def of(self, kind):
        with self._lock:
            return [e for e in self.events if isinstance(e, kind)]

    def wait_for(self, predicate, timeout: float = 120.0):
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if predicate(event):
                return event
        raise AssertionError("timed out waiting for a training event")


@pytest.fixture
def event_log():
    return EventLog()


@pytest.fixture
def dataset(data_dir, tone_folder):
    """The tone fixture imported as dataset "tones"."""
    from sda_web.datasets import import_folder

    return import_folder(data_dir, tone_folder, name="tones")


@pytest.fixture(scope="session")
def trained_demo(tmp_path_factory):
    """The data directory of a completed tiny run on the demo set, trained once per test session
    (about 10 s on one thread); tests change only copies of it (`copy_of_trained`)."""
    from generation_helpers import train_demo_model

    return train_demo_model(tmp_path_factory.mktemp("demo-model"))


def pytest_collection_modifyitems(config, items):
    """`trains` on every test that trains or uses the shared trained model, `browser` on the
    Chromium tests: `make test-fast` leaves them out."""
    for item in items:
        module = item.module.__name__.rpartition(".")[2]
        if module.startswith("test_browser"):
            item.add_marker(pytest.mark.browser)
        if "trained_demo" in item.fixturenames:  # the others that train say so with @pytest.mark.trains
            item.add_marker(pytest.mark.trains)
