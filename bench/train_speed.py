"""Training speed on the reference workload, side by side with the earlier design's model.

Workload: 20 synthetic files of 2-4 s at 48 kHz (about 58 s of audio), whole
sounds, 1 torch thread, default Balanced settings. We run the real
TrainingRunner for a number of epochs (previews and checkpoints included) and
report seconds per epoch, steps per second, the share of each epoch spent
outside forward/backward, peak memory and time to the first step. In the same
run we time forward+backward of a 2-D conv VAE of 3.7 M parameters (the kind
of model the earlier implementation trained, 3.1 M there) on batches of 80 mel bands x 96 frames, as the
reference point.

    python bench/train_speed.py [--epochs 20] [--device cpu] [--files 20]
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("SDA_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def write_workload(folder: Path, count: int, seed: int = 0) -> float:
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    total = 0.0
    for i in range(count):
        seconds = 2.0 + 2.0 * (i % 7) / 6 if count == 20 else rng.uniform(2, 4)
        n = int(48000 * seconds)
        t = np.arange(n) / 48000
        f0 = 80 * 2 ** rng.uniform(0, 4)
        partials = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k ** rng.uniform(0.7, 2) for k in range(1, 8))
        wave = partials * np.exp(-t * rng.uniform(0.3, 3)) + 0.05 * rng.standard_normal(n)
        sf.write(folder / f"ref_{i:03d}.wav", (0.3 * wave / np.abs(wave).max()).astype(np.float32), 48000)
        total += seconds
    return total


def reference_model_ms_per_step(batch, steps: int = 6) -> tuple[float, int]:
    """Forward+backward of a 2-D conv VAE (3.7 M params) on (B, 80, 96) log-mel batches."""
    import torch
    from torch import nn

    w = 32
    act = nn.LeakyReLU(0.2)
    enc = nn.Sequential(nn.Conv2d(1, w, 3, 2, 1), act, nn.Conv2d(w, 2 * w, 3, 2, 1), act,
                        nn.Conv2d(2 * w, 4 * w, 3, 2, 1), act, nn.Conv2d(4 * w, 8 * w, 3, 2, 1), act,
                        nn.Flatten(), nn.Linear(8 * w * 5 * 6, 256))
    lin = nn.Linear(128, 8 * w * 5 * 6)
    dec = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(8 * w, 4 * w, 3, 1, 1), act,
                        nn.Upsample(scale_factor=2), nn.Conv2d(4 * w, 2 * w, 3, 1, 1), act,
                        nn.Upsample(scale_factor=2), nn.Conv2d(2 * w, w, 3, 1, 1), act,
                        nn.Upsample(scale_factor=2), nn.Conv2d(w, w, 3, 1, 1), act, nn.Conv2d(w, 1, 3, 1, 1))
    params = [*enc.parameters(), *lin.parameters(), *dec.parameters()]
    opt = torch.optim.AdamW(params, 1e-3)
    x = batch.unsqueeze(1)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        mu, _ = enc(x).chunk(2, dim=1)
        out = dec(lin(mu).view(-1, 8 * w, 5, 6))
        loss = ((out - x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:]) * 1000, sum(p.numel() for p in params)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    process_start = time.perf_counter()
    import torch

    if args.device == "cpu":
        torch.set_num_threads(1)
    from sda_web.datasets import import_folder
    from sda_web.generation.after_training import analyse_trained_run
    from sda_web.training import EpochMetrics, StepProgress, TrainingCompleteEvent, TrainingRunner, get_adaptive_config

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        seconds = write_workload(tmp / "sounds", args.files)
        manifest = import_folder(tmp / "data", tmp / "sounds", name="reference")
        config = get_adaptive_config(manifest.file_count, "balanced")
        first_step_at: list[float] = []
        steps: list[int] = []
        done = []

        def on_event(event):
            if isinstance(event, StepProgress) and not first_step_at:
                first_step_at.append(time.perf_counter())
                steps.append(event.steps_per_epoch)
            elif isinstance(event, EpochMetrics) and event.epoch >= args.epochs:
                runner.cancel()
            elif isinstance(event, TrainingCompleteEvent):
                done.append(event)

        runner = TrainingRunner(tmp / "data", after_training=analyse_trained_run)
        t_start = time.perf_counter()
        runner.start("reference", config, on_event, device=args.device)
        runner.wait()
        assert done and done[0].outcome in ("cancelled", "completed"), done
        timings = runner.epoch_timings[1:]  # the first epoch warms caches up
        wall = statistics.median(t["wall_s"] for t in timings)
        compute = statistics.median(t["compute_s"] for t in timings)
        mean_wall = statistics.mean(t["wall_s"] for t in timings)
        mean_outside = statistics.mean(1 - t["compute_s"] / t["wall_s"] for t in timings)
        median_train_outside = statistics.median(1 - t["compute_s"] / t["train_s"] for t in timings)
        previews = sum(t["preview_s"] for t in timings) / len(timings)
        steps_per_epoch = steps[0]

        # The reference model's input: 80 mel bands of 1-s segments, as the earlier design had.
        batch = torch.randn(config.batch_size, 80, 96, generator=torch.Generator().manual_seed(0))
        ref_ms, ref_params = reference_model_ms_per_step(batch)

    from sda_web.audio.features import default_spec
    from sda_web.model import SoundShape, SoundVAE

    spec = default_spec()
    ours_params = sum(p.numel() for p in SoundVAE(SoundShape(spec.n_bands, 144, config.latent_dim, config.local_dim,
                                                             config.width, 0.0, 0.0107)).parameters())
    ours_ms = compute / max(1, steps_per_epoch) * 1000
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the training process

    print(f"workload: {args.files} files, {seconds:.1f} s at 48 kHz, whole sounds, batch {config.batch_size}, "
          f"device {args.device}, torch threads {torch.get_num_threads()}, {len(timings)} timed epochs")
    print(f"{'':34}{'sda-web':>12}{'earlier 2-D VAE':>18}")
    print(f"{'parameters':34}{ours_params / 1e6:>11.2f}M{ref_params / 1e6:>17.2f}M")
    print(f"{'forward+backward ms per step':34}{ours_ms:>12.1f}{ref_ms:>18.1f}   ratio {ref_ms / ours_ms:.1f}x")
    print(f"seconds per epoch (median, all included): {wall:.3f}  (mean {mean_wall:.3f}; reference design ~1.0; target <= 0.5)")
    print(f"steps per second: {steps_per_epoch / wall:.1f}")
    print(f"share outside forward/backward: {mean_outside:.1%} of each epoch incl. validation+previews+checkpoints; "
          f"{median_train_outside:.1%} of the training pass (data handling; target < 10%)")
    print(f"previews: {previews * 1000:.0f} ms per epoch on average")
    print(f"time to first step: {first_step_at[0] - t_start:.2f} s after start(), "
          f"{first_step_at[0] - process_start:.2f} s after process start")
    print(f"peak memory (RSS) of the training process: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
