"""Pieces the live benchmarks share: a small real dataset and a step counter."""
from __future__ import annotations

from pathlib import Path


def make_dataset(data_dir: Path, count: int = 8) -> None:
    """`count` decaying tones of 2-3 s, imported as dataset "bench"."""
    import numpy as np
    import soundfile as sf

    from sda_web.datasets import import_folder

    folder = data_dir.parent / "bench-sounds"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        rate = 24000
        t = np.arange(int(rate * (2.0 + 0.5 * (i % 3)))) / rate
        wave = 0.4 * np.exp(-t * (0.5 + i * 0.3)) * np.sin(2 * np.pi * 110 * 2 ** (i * 4 / 12) * t)
        wave += 0.02 * rng.standard_normal(t.size)
        sf.write(folder / f"s{i}.wav", wave.astype(np.float32), rate)
    import_folder(data_dir, folder, name="bench")


def count_steps_per_epoch(hub) -> list[int]:
    """Wrap the hub's runner callbacks to note steps per epoch as the real runner
    reports them; returns the one-element list that holds the latest count."""
    from sda_web.training.events import StepProgress

    steps_seen = [0]
    plain_callback_for = hub.callback_for

    def callback_for(token):
        callback = plain_callback_for(token)

        def wrapped(event):
            if isinstance(event, StepProgress):
                steps_seen[0] = event.steps_per_epoch
            callback(event)
        return wrapped

    hub.callback_for = callback_for
    return steps_seen
