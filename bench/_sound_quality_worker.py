"""One side of bench/sound_quality.py: train a default model with whichever sda_web is on
sys.path (this tree, or the baseline's checkout) and write what it makes.

Uses only what both sides have: import_folder, TrainingRunner, load_trained_model,
synth.generate, transform.transform_variation, and the features and inverse. Writes into --out:
  <file>.ceiling.wav     true features -> waveform (the pipeline's own limit)
  <file>.ceiling-finished.wav  the same through the fades every sound the app makes gets
  <file>.vae.wav         `sda transform --variation 0`: encoded, decoded, level-matched
  gen-<k>.wav            generated variations at variation 1 (seeds 1..--generate), --duration long
  generated.wav          10 s from the model's centre (seed 1), for the speed figure and pictures
  summary.json           rates, epoch timings, generation speed, checkpoint size, which files were held out
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--generate", type=int, default=64, help="how many variations to generate")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per generated variation")
    args = parser.parse_args()
    import soundfile as sf
    import torch

    torch.set_num_threads(1)
    from sda_web.audio.features import log_features
    from sda_web.audio.inverse import features_to_wave
    from sda_web.audio.io import load_mono
    from sda_web.datasets import import_folder
    from sda_web.generation import synth
    from sda_web.generation.analysis import load_analysis
    from sda_web.generation.loading import load_trained_model
    from sda_web.generation.settings import GenerationSettings
    from sda_web.generation.transform import transform_variation
    from sda_web.storage import read_json
    from sda_web.training import TrainingCompleteEvent, TrainingRunner, get_adaptive_config
    from sda_web.training.config import checkpoint_interval, preview_interval

    manifest = import_folder(args.data_dir, args.folder, name="bench")
    config = get_adaptive_config(manifest.file_count, "balanced")
    if args.epochs:
        config = dataclasses.replace(config, epochs=args.epochs, preview_every=preview_interval(args.epochs),
                                     checkpoint_every=checkpoint_interval(args.epochs))
    done = []
    try:  # this tree hands the analysis to the runner; the baseline's runner analysed by itself
        from sda_web.generation.after_training import analyse_trained_run
        runner = TrainingRunner(args.data_dir, after_training=analyse_trained_run)
    except ImportError:
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
    analysis = load_analysis(run_dir)
    spec, rate = model.spec, model.spec.sample_rate
    audio_dir = args.data_dir / "datasets" / "bench" / "audio"
    args.out.mkdir(parents=True, exist_ok=True)
    plain = GenerationSettings(seed=1, variation_amount=0.0).validated(analysis)
    transform_s = transform_audio_s = 0.0
    for name in list(record["train_files"]) + list(record["val_files"]):
        wave = load_mono(audio_dir / name, rate)
        with torch.no_grad():
            ceiling = features_to_wave(log_features(torch.from_numpy(wave), spec), spec).numpy()
            sf.write(args.out / f"{name}.ceiling.wav", ceiling, rate, subtype="FLOAT")
            # As the app would write it: the same 2/10-ms fades every sound it makes gets.
            finished = synth._finish(ceiling.copy(), len(wave), rate)
            sf.write(args.out / f"{name}.ceiling-finished.wav", finished, rate, subtype="FLOAT")
            t = time.perf_counter()
            made = transform_variation(model, analysis, wave, plain, 0)
            transform_s += time.perf_counter() - t
            transform_audio_s += len(wave) / rate
            sf.write(args.out / f"{name}.vae.wav", made, rate, subtype="FLOAT")
    gen_s = 0.0
    for seed in range(1, args.generate + 1):
        t = time.perf_counter()
        wave = synth.generate(model, analysis, seed=seed, duration_s=args.duration, variation_amount=1.0)[0]
        gen_s += time.perf_counter() - t
        sf.write(args.out / f"gen-{seed}.wav", wave, rate, subtype="FLOAT")
    best = None
    for _ in range(2):
        timing = synth.SynthTimings()
        waves = synth.generate(model, analysis, seed=1, duration_s=10.0, timings=timing)
        best = timing if best is None or timing.total_s < best.total_s else best
    sf.write(args.out / "generated.wav", waves[0], rate, subtype="FLOAT")
    checkpoint = run_dir / "checkpoints" / "best.pt"
    summary = {
        "rate": rate, "bands": spec.n_bands, "epochs": config.epochs,
        "files": manifest.file_count, "train_files": record["train_files"], "val_files": record["val_files"],
        "epoch_s_median": statistics.median(t["wall_s"] for t in timings),
        "epoch_s_mean": statistics.mean(t["wall_s"] for t in timings),
        "compute_s_median": statistics.median(t["compute_s"] for t in timings),
        "preview_s_per_epoch": sum(t["preview_s"] for t in timings) / len(timings),
        "train_s": train_s, "generate_10s_realtime": best.realtime_factor,
        "generate_realtime": args.generate * args.duration / gen_s,
        "transform_realtime": transform_audio_s / transform_s,
        "checkpoint_mb": checkpoint.stat().st_size / 1e6 if checkpoint.is_file() else float("nan"),
        "duration": args.duration, "dataset_dir": str(audio_dir),
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
