"""Reconstruction quality vs the pipeline's own limit, side by side.

For each validation file of a trained model, the log-spectral distance (dB)
against the original audio of
  (a) true mel -> waveform (pseudo-inverse + Griffin-Lim: the best this
      feature pipeline can sound), and
  (b) VAE reconstruction -> waveform (encode, decode, same inverse).
The ratio b/a says how much the model loses on top of the features.
Target after a default training run on the demo dataset: within 1.5x.

    python bench/recon_quality.py                     # trains a default Balanced run on the demo set first
    python bench/recon_quality.py --data-dir D --run RUN_ID
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("SDA_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def log_spectral_distance(reference, estimate, n_fft: int = 1024, hop: int = 256, dynamic_range_db: float = 80.0) -> float:
    """Mean over frames of the RMS difference (dB) between log power spectra,
    with both floored at dynamic_range_db below the reference's peak."""
    import torch

    n = min(len(reference), len(estimate))
    window = torch.hann_window(n_fft)
    spectra = [torch.stft(torch.as_tensor(x[:n]).float(), n_fft, hop, window=window, return_complex=True).abs().pow(2)
               for x in (reference, estimate)]
    floor = spectra[0].max() * 10 ** (-dynamic_range_db / 10)
    ref_db, est_db = (10 * torch.log10(s.clamp(min=floor)) for s in spectra)
    return float(((ref_db - est_db) ** 2).mean(dim=0).sqrt().mean())


def train_default_demo_run(data_dir: Path) -> str:
    from sda_web.audio.demo import write_demo_sounds
    from sda_web.datasets import import_folder
    from sda_web.training import EpochMetrics, TrainingRunner, get_adaptive_config

    write_demo_sounds(data_dir.parent / "demo")
    manifest = import_folder(data_dir, data_dir.parent / "demo", name="demo")
    config = get_adaptive_config(manifest.file_count, "balanced")
    print(f"training a default Balanced run on the demo set: {manifest.file_count} files, {config.epochs} epochs")
    t0 = time.perf_counter()

    def report(event):
        if isinstance(event, EpochMetrics) and event.epoch % 25 == 0:
            print(f"  epoch {event.epoch}: train {event.train_loss:.4f} val {event.val_loss:.4f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)

    runner = TrainingRunner(data_dir)
    run_id = runner.start("demo", config, report)
    runner.wait()
    return run_id


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--run")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    from sda_web.audio.features import log_mel, mel_to_waveform
    from sda_web.audio.io import load_mono
    from sda_web.generation.loading import load_trained_model
    from sda_web.storage import read_json
    from sda_web.training import load_run

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or Path(tmp) / "data"
        run_id = args.run or train_default_demo_run(data_dir)
        info = load_run(data_dir, run_id)
        record = read_json(info.run_dir / "run.json")
        trained = load_trained_model(info.run_dir, "best")
        audio_dir = data_dir / "datasets" / info.dataset / "audio"
        print(f"run {run_id}: best checkpoint from epoch {trained.epoch}, {len(record['val_files'])} validation files")
        print(f"{'file':32}{'limit dB':>10}{'VAE dB':>10}{'ratio':>8}")
        limits, vaes = [], []
        for name in record["val_files"]:
            wave = torch.from_numpy(load_mono(audio_dir / name, trained.spec.sample_rate))
            limit = mel_to_waveform(log_mel(wave, trained.spec), trained.spec)
            vae = trained.reconstruct(wave)
            a, b = log_spectral_distance(wave, limit), log_spectral_distance(wave, vae)
            limits.append(a)
            vaes.append(b)
            print(f"{name[:31]:32}{a:>10.2f}{b:>10.2f}{b / a:>8.2f}")
        a, b = statistics.mean(limits), statistics.mean(vaes)
        print(f"{'mean':32}{a:>10.2f}{b:>10.2f}{b / a:>8.2f}   target <= 1.5: {'MET' if b / a <= 1.5 else 'NOT MET'}")


if __name__ == "__main__":
    main()
