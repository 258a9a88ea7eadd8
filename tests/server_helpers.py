"""A real `sda serve` in a child process, as a user starts it, for tests that need the whole app."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from conftest_web import free_port

ENV = {**os.environ, "SDA_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
TRAIN_FORM = {"preset": "balanced", "learning_rate": "0.001", "dropout": "0.1", "weight_decay": "0.0001",
              "kl_weight_max": "0.1", "patience": "0"}  # every epoch asked for, so each run's length is known


class Server:
    """`sda serve` on a free port, as a user starts it."""

    def __init__(self, data: Path):
        self.data, self.port, self.proc = data, free_port(), None
        self.base = f"http://127.0.0.1:{self.port}"

    def start(self) -> "Server":
        self.proc = subprocess.Popen([sys.executable, "-m", "sda_web.cli", "serve", "--port", str(self.port),
                                      "--data-dir", str(self.data)], env=ENV, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        wait_for(lambda: _answers(self.base), "sda serve to answer", 30)
        return self

    def train(self, epochs: int, **extra) -> httpx.Response:
        return httpx.post(self.base + "/train/start", data={**TRAIN_FORM, "epochs": str(epochs), **extra},
                          headers={"HX-Request": "true", "Origin": self.base}, timeout=30)

    def post(self, path: str, data: dict) -> httpx.Response:
        return httpx.post(self.base + path, data=data, headers={"HX-Request": "true", "Origin": self.base}, timeout=30)

    def page(self) -> str:
        return httpx.get(self.base + "/train", timeout=30).text

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc.stdout.close()

    def stop(self) -> str:
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=60)
        return out


def _answers(base: str) -> bool:
    try:
        httpx.get(base + "/", timeout=1)
        return True
    except httpx.TransportError:
        return False


def wait_for(predicate, what: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
