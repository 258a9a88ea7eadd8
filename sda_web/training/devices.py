"""Where torch runs: the device a run asks for and how many CPU threads it uses."""
from __future__ import annotations

import os
import re
import sys

from .config import ConfigError


def torch_threads() -> int:
    """Threads for torch on the CPU: half the cores (at least 1, at most 8).

    On a busy 2-core machine 2 threads ran 3-4x slower than 1 (and Griffin-Lim
    10-50x slower), so we leave a core for the rest of the system.
    SDA_THREADS overrides."""
    env = os.environ.get("SDA_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, min(8, (os.cpu_count() or 2) // 2))


def resolve_device(name: str = "auto"):
    import torch

    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("CUDA was requested but no CUDA GPU is available; use --device cpu or auto.")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("MPS was requested but is not available on this machine; use --device cpu or auto.")
    if name not in ("cpu", "mps") and not name.startswith("cuda"):
        raise ConfigError(f"Unknown device {name!r}; use auto, cpu, cuda or mps.")
    return torch.device(name)


def training_devices() -> list[str]:
    """The devices the queue trains on at once, one run each: every CUDA GPU ("cuda:0",
    "cuda:1", ...), else the CPU. Found without importing torch (the server starts in
    a second): CUDA_VISIBLE_DEVICES when set, else the /dev/nvidiaN device files.
    SDA_DEVICES ("cuda:0,cuda:1" or "cpu") overrides."""
    chosen = [d.strip() for d in os.environ.get("SDA_DEVICES", "").split(",") if d.strip()]
    if chosen:
        return chosen
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        count = len([d for d in visible.split(",") if d.strip() and not d.strip().startswith("-")])
    else:
        count = len([p for p in os.listdir("/dev") if re.fullmatch(r"nvidia\d+", p)]) if os.path.isdir("/dev") else 0
    if count:
        return [f"cuda:{i}" for i in range(count)]
    return ["auto"] if sys.platform == "darwin" else ["cpu"]  # auto: Apple's GPU when it is there
