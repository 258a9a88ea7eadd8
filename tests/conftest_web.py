"""Helpers for the web tests: a scripted runner, sample events, tiny datasets.

Imported by tests/web/test_web_*.py (not a pytest conftest: the shared fixtures
live in tests/conftest.py, which belongs to the core).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

from sda_web.training.events import EpochMetrics, PreviewEvent, RunStarted, StepProgress, TrainingCompleteEvent


def metrics(epoch: int, total: int = 10, loss: float | None = None) -> EpochMetrics:
    loss = loss if loss is not None else 1.0 / epoch
    return EpochMetrics(epoch=epoch, total_epochs=total, train_loss=loss, val_loss=loss * 1.1, train_recon=loss,
                        train_kl=0.01, val_recon=loss, val_kl=0.01, learning_rate=1e-3, elapsed_s=epoch * 2.0,
                        eta_s=(total - epoch) * 2.0)


def preview(run_dir: Path | None, epoch: int, run_id: str = "run-1") -> PreviewEvent:
    folder = Path(run_dir or f"/data/runs/{run_id}") / "previews"
    return PreviewEvent(epoch=epoch, audio_path=str(folder / f"epoch_{epoch:04d}_recon.wav"),
                        prior_path=str(folder / f"epoch_{epoch:04d}_prior.wav"))


def complete(outcome: str = "completed", epochs: int = 10, total: int = 10, error: str | None = None):
    return TrainingCompleteEvent(outcome=outcome, epochs_done=epochs, total_epochs=total, best_val_loss=0.1,
                                 checkpoint_path=None, error=error)


def started(run_id: str = "run-1", dataset: str = "tones", total: int = 10) -> RunStarted:
    return RunStarted(run_id=run_id, dataset=dataset, total_epochs=total, start_epoch=0, train_files=4,
                      val_files=1, device="cpu")


def step(epoch: int, step_: int, steps: int = 4) -> StepProgress:
    return StepProgress(epoch=epoch, step=step_, steps_per_epoch=steps)


class ScriptedRunner:
    """Stands in for TrainingRunner: start() records the callback; the test emits
    events through it from another thread, as the training thread would."""

    def __init__(self):
        self.callback = None
        self.started: list[tuple] = []
        self._running = False
        self.cancelled = False

    @property
    def is_running(self) -> bool:
        return self._running

    @property
    def current_run_id(self):
        return "run-1" if self._running else None

    def start(self, dataset, config, callback, device="auto", start_from=None):
        self.callback, self._running = callback, True
        self.started.append((dataset, config))
        self.start_from = start_from
        return "run-1"

    def resume(self, run_id, callback, epochs=None, device="auto"):
        self.callback, self._running = callback, True
        self.started.append((run_id, epochs))
        return run_id

    def cancel(self) -> bool:
        if not self._running:
            return False
        self.cancelled = True
        return True

    def wait(self, timeout=None) -> bool:
        return True

    def prewarm(self) -> None:
        self.prewarmed = True

    def close(self) -> None:
        self.closed = True

    def emit(self, *events) -> None:
        """Emit from a separate thread, like the real runner's relay thread."""
        def run():
            for event in events:
                if isinstance(event, TrainingCompleteEvent):
                    self._running = False
                self.callback(event)
        thread = threading.Thread(target=run)
        thread.start()
        thread.join()


def write_tones(folder: Path, count: int = 5, seconds: float = 1.2, rate: int = 16000) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    paths = []
    for i in range(count):
        t = np.arange(int(rate * seconds * (0.8 + 0.1 * i))) / rate
        wave = 0.4 * np.exp(-t * (1 + i)) * np.sin(2 * np.pi * 110 * 2 ** (i * 5 / 12) * t)
        wave += 0.02 * rng.standard_normal(t.size)
        path = folder / f"tone_{i}.wav"
        sf.write(path, wave.astype(np.float32), rate)
        paths.append(path)
    return paths


def make_dataset(data_dir: Path, name: str = "tones", count: int = 5, tmp: Path | None = None):
    from sda_web.datasets import import_folder

    folder = (tmp or data_dir.parent) / f"src-{name}"
    write_tones(folder, count)
    return import_folder(data_dir, folder, name=name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_real_part(path_or_name: str, what: str, module: str | None = None) -> str:
    """The full path of a binary the test drives (Chromium, nginx), and its Python module if any.

    Missing: skip with the reason, except under CI=true, where it is a failure
    (.ci/run installs these; a CI that silently skips them proves nothing)."""
    import importlib.util
    import os
    import shutil

    import pytest

    found = path_or_name if os.path.isabs(path_or_name) and os.access(path_or_name, os.X_OK) else shutil.which(path_or_name)
    missing = None
    if not found:
        missing = f"{what} is not installed ({path_or_name} not found; apt-get install -y {os.path.basename(path_or_name)})"
    elif module and importlib.util.find_spec(module) is None:
        missing = f"the Python package {module!r} is not installed (pip install -e '.[test]')"
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must run this test, but {missing}.")
        pytest.skip(missing)
    return found


# ---- a real server in a subprocess ----------------------------------------------

HX = {"HX-Request": "true"}  # what htmx sends: the routes answer with fragments


def wait_import(client, job_id: str = "1", timeout: float = 30):
    """Poll an import job's status fragment until it stops asking to be polled; returns the last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/data/imports/{job_id}", headers=HX)
        if "every 1s" not in r.text:
            return r
        time.sleep(0.1)
    raise AssertionError("the import did not finish")


def launch(data_dir, port: int, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SDA_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "sda_web.web.serve", "--port", str(port), "--data-dir", str(data_dir), *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def first_answer(port: int, path: str = "/", timeout: float = 20.0) -> float:
    """Seconds until the server answers `path` (polled every 10 ms)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1.0)
            return time.monotonic() - t0
        except httpx.TransportError:
            time.sleep(0.01)
    raise AssertionError("the server did not answer")


def stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""


# ---- a real browser ----------------------------------------------------------------

class CspWatch:
    """CSP violations and script errors of one Playwright page, as Chromium reports them:
    DevTools' Audits issues (seen with JavaScript off too) and console messages."""

    def __init__(self, context, page):
        self.violations: list[str] = []
        self.errors: list[str] = []
        cdp = context.new_cdp_session(page)
        cdp.on("Audits.issueAdded", self._issue)
        cdp.send("Audits.enable")
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.cdp = cdp

    def _issue(self, params):
        issue = params["issue"]
        if issue["code"] == "ContentSecurityPolicyIssue":
            details = issue["details"]["contentSecurityPolicyIssueDetails"]
            self.violations.append(f"{details.get('violatedDirective')}: {details.get('blockedURL', '')} "
                                   f"{details.get('contentSecurityPolicyViolationType')}")

    def _console(self, message):
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            self.violations.append(message.text)

    def settle(self, page):
        """Let pending reports arrive (they come asynchronously)."""
        page.wait_for_timeout(300)
