"""One side of bench/sound_quality.py: train a default model with whichever sda_web is on
sys.path (this tree, or the old pipeline's checkout) and write what it makes.

Uses only what both pipelines have: import_folder, TrainingRunner, load_trained_model,
synth.generate, and each side's own features and inverse. Writes into --out:
  <file>.ceiling.wav   true features -> waveform (the pipeline's own limit)
  <file>.vae.wav       encode -> decode -> waveform
  generated.wav        10 s from the model's centre (seed 1)
  summary.json         rates, epoch timings, generation speed, which files were held out
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("SDA_THREADS", "1")


def inverse_functions():
    try:  # full band
        from sda_web.audio.features import log_features
        from sda_web.audio.inverse import features_to_wave
        return log_features, features_to_wave
    except ImportError:  # the 24 kHz mel pipeline
        from sda_web.audio.features import log_mel, mel_to_waveform
        return log_mel, mel_to_waveform


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args()
    import soundfile as sf
    import torch

    torch.set_num_threads(1)
    from sda_web.audio.io import load_mono
    from sda_web.datasets import import_folder
    from sda_web.generation import synth
    from sda_web.generation.analysis import load_analysis
    from sda_web.generation.loading import load_trained_model
    from sda_web.storage import read_json
    from sda_web.training import TrainingCompleteEvent, TrainingRunner, get_adaptive_config
    from sda_web.training.config import checkpoint_interval, preview_interval

    manifest = import_folder(args.data_dir, args.folder, name="bench")
    config = get_adaptive_config(manifest.file_count, "balanced")
    if args.epochs:
        config = dataclasses.replace(config, epochs=args.epochs, preview_every=preview_interval(args.epochs),
                                     checkpoint_every=checkpoint_interval(args.epochs))
    done = []
    runner = TrainingRunner(args.data_dir)
    t0 = time.perf_counter()
    run_id = runner.start("bench", config, lambda e: done.append(e) if isinstance(e, TrainingCompleteEvent) else None)
    runner.wait()
    train_s = time.perf_counter() - t0
    assert done and done[0].outcome == "completed", done
    timings = runner.epoch_timings[1:] or runner.epoch_timings
    run_dir = args.data_dir / "runs" / run_id
    record = read_json(run_dir / "run.json")
    model = load_trained_model(run_dir, "best")
    spec, rate = model.spec, model.spec.sample_rate
    features, inverse = inverse_functions()
    audio_dir = args.data_dir / "datasets" / "bench" / "audio"
    args.out.mkdir(parents=True, exist_ok=True)
    for name in list(record["train_files"]) + list(record["val_files"]):
        wave = torch.from_numpy(load_mono(audio_dir / name, rate))
        with torch.no_grad():
            sf.write(args.out / f"{name}.ceiling.wav", inverse(features(wave, spec), spec).numpy(), rate, subtype="FLOAT")
            sf.write(args.out / f"{name}.vae.wav", model.reconstruct(wave).numpy(), rate, subtype="FLOAT")
    analysis = load_analysis(run_dir)
    synth.generate(model, analysis, seed=1, duration_s=2.0)  # warm-up
    best = None
    for _ in range(2):
        timing = synth.SynthTimings()
        waves = synth.generate(model, analysis, seed=1, duration_s=10.0, timings=timing)
        best = timing if best is None or timing.total_s < best.total_s else best
    sf.write(args.out / "generated.wav", waves[0], rate, subtype="FLOAT")
    summary = {
        "rate": rate, "bands": spec.n_bands if hasattr(spec, "n_bands") else spec.n_mels, "epochs": config.epochs,
        "files": manifest.file_count, "train_files": record["train_files"], "val_files": record["val_files"],
        "epoch_s_median": statistics.median(t["wall_s"] for t in timings),
        "epoch_s_mean": statistics.mean(t["wall_s"] for t in timings),
        "compute_s_median": statistics.median(t["compute_s"] for t in timings),
        "preview_s_per_epoch": sum(t["preview_s"] for t in timings) / len(timings),
        "train_s": train_s, "generate_10s_realtime": best.realtime_factor,
        "dataset_dir": str(audio_dir),
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
