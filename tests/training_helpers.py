"""Small pieces the training tests share: a tiny model config, the final-event test,
and a look at the training processes (Linux /proc)."""
import os
import time

from sda_web.training import TrainingCompleteEvent, get_adaptive_config


def finished(event) -> bool:
    return isinstance(event, TrainingCompleteEvent)


def tiny_config(**overrides):
    """A model small enough to train a few epochs on the tone fixture in seconds. It runs every
    epoch asked for (patience 0) unless a test asks it to stop itself."""
    base = dict(epochs=6, width=32, latent_dim=16, batch_size=4, learning_rate=3e-3, dropout=0.0, checkpoint_every=2,
                preview_every=3, augment_band_shift=0, patience=0)
    base.update(overrides)
    return get_adaptive_config(6).with_overrides(**base)


def gone(pid: int) -> bool:
    """No such process, or only its zombie (a container's init may never reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):  # the second when it exits while /proc is read
        return True


def wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def training_children(parent: int | None = None) -> set[int]:
    """Live training processes started by `parent` (this test process by default)."""
    parent = parent or os.getpid()
    pids = set()
    for task in os.listdir(f"/proc/{parent}/task"):
        try:
            with open(f"/proc/{parent}/task/{task}/children") as f:
                pids.update(int(pid) for pid in f.read().split())
        except FileNotFoundError:  # a thread that has just ended
            continue
    found = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"sda_web.training.worker" in f.read() and not gone(pid):
                    found.add(pid)
        except FileNotFoundError:
            continue
    return found


def new_training_children(before: set[int], count: int = 1, timeout: float = 10, parent: int | None = None) -> set[int]:
    """Wait until `count` training processes beyond `before` are up (they start in the background)."""
    deadline = time.monotonic() + timeout
    while len(found := training_children(parent) - before) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return found
