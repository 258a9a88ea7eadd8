"""Running `sda` as a user does: a fresh process, one torch thread, unbuffered output."""
from __future__ import annotations

import os
import subprocess
import sys


def sda_argv(*args) -> list[str]:
    """The command line of `sda ARGS...` with this interpreter."""
    return [sys.executable, "-m", "sda_web.cli", *map(str, args)]


def sda_env() -> dict:
    return {**os.environ, "SDA_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def sda(*args, timeout=120) -> subprocess.CompletedProcess:
    """Run `sda ARGS...` to the end; its exit status and text output."""
    return subprocess.run(sda_argv(*args), capture_output=True, text=True, env=sda_env(), timeout=timeout)
