"""Where torch runs: the device a run asks for and how many CPU threads it uses."""
from __future__ import annotations

import os

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
