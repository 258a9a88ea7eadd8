"""Generation speed: real-time factor (seconds of audio per second of compute) for
10 s of audio, broken down into model (latent path + decoding + crossfades),
band inverse (log bands -> linear power) and Griffin-Lim, for a default-size
full-band model beside a default-size model of the old 24 kHz mel features
(the format older checkpoints still load in), in the same run. Target on the
CPU: at least 10x real time.

Also: the inverse's quality at each iteration count, as full-band log-spectral
distance against 10 s of real audio (the demo set, true features -> waveform),
and the sound-control analysis time for a 20-file dataset (target under 10 s).

    python bench/generate_speed.py                   # default-size models (random weights: speed only)
    python bench/generate_speed.py --data-dir D --run RUN_ID   # a trained model instead of the full-band one
    python bench/generate_speed.py --device cuda     # also time on a GPU, when there is one
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("SDA_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SECONDS = 10.0
REPEATS = 3


def default_model(device: str, spec=None):
    """A model of whole sounds of the default size with seeded random weights: decoding costs
    the same whatever the weights are."""
    import torch

    from sda_web.audio.features import BandSpec
    from sda_web.generation.loading import TrainedModel
    from sda_web.model import SoundShape, SoundVAE
    from sda_web.training import get_adaptive_config
    from sda_web.model.lengths import head_frames
    from sda_web.model.stats import FeatureStats

    config = get_adaptive_config(20)
    spec = spec or BandSpec()
    shape = SoundShape(n_bands=spec.n_bands, frames=head_frames(spec, config.segment_seconds),
                       latent_dim=config.latent_dim, local_dim=config.local_dim, width=config.width,
                       dropout=config.dropout, frame_seconds=spec.hop_length / spec.sample_rate)
    torch.manual_seed(0)
    model = SoundVAE(shape).to(device).eval()
    mean = float(torch.log(torch.tensor(spec.log_floor))) / 2
    return TrainedModel(model, spec, FeatureStats(mean=mean, std=3.0), shape, 0, torch.device(device))


def time_generation(model, analysis, device: str) -> dict:
    from sda_web.generation.synth import SynthTimings, generate

    runs = []
    for seed in range(REPEATS):
        timings = SynthTimings()
        generate(model, analysis, seed=seed, duration_s=SECONDS, timings=timings)
        runs.append(timings)
    best = min(runs, key=lambda t: t.total_s)
    return {"model": best.model_s, "band_inverse": best.band_inverse_s, "griffin_lim": best.griffin_lim_s,
            "total": best.total_s, "rtf": best.realtime_factor, "device": device}


def demo_wave(rate: int):
    """10 s of the demo set's sounds, back to back, at `rate`: audio whose features are known."""
    import torch

    from sda_web.audio.demo import write_demo_sounds
    from sda_web.audio.io import load_mono

    with tempfile.TemporaryDirectory() as tmp:
        waves = [torch.from_numpy(load_mono(p, rate)) for p in write_demo_sounds(Path(tmp), count=12)]
    return torch.cat(waves)[: int(SECONDS * rate)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--run", help="a trained run id in --data-dir (default: a default-size random model)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda: cuda adds a GPU column when one is available")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from bench._sound_metrics import lsd as log_spectral_distance  # the sound benches' full-band LSD
    from sda_web.audio.features import MelSpec, log_features
    from sda_web.audio.inverse import features_to_wave
    from sda_web.generation.analysis import load_analysis
    from sda_web.generation.loading import load_trained_model
    from sda_web.generation.settings import GENERATION_GL_ITERS
    from sda_web.training import load_run

    if args.run:
        run_dir = load_run(args.data_dir, args.run).run_dir
        model, analysis = load_trained_model(run_dir), load_analysis(run_dir)
        source = f"trained model {args.run}"
    else:
        model, analysis = default_model("cpu"), None
        default = model.shape
        source = f"default-size models (width {default.width}, latent {default.latent_dim}), random weights"
    old = default_model("cpu", MelSpec())
    print(f"10 s of audio, 1 CPU thread, {source}; best of {REPEATS}")

    rows = [("full band", model.spec, time_generation(model, analysis, "cpu")),
            ("old 24 kHz mel", old.spec, time_generation(old, None, "cpu"))]
    print(f"\n{'':18}{'rate':>7}{'bands':>6}{'model ms':>10}{'to power ms':>12}{'GL ms':>8}{'total ms':>10}{'x RT':>7}")
    for label, spec, t in rows:
        print(f"{label:18}{spec.sample_rate:>7}{spec.n_bands:>6}{t['model'] * 1000:>10.1f}{t['band_inverse'] * 1000:>12.1f}"
              f"{t['griffin_lim'] * 1000:>8.1f}{t['total'] * 1000:>10.1f}{t['rtf']:>7.1f}")
    print(f"ratio full band / old, total time: {rows[0][2]['total'] / rows[1][2]['total']:.2f} "
          f"(generation uses {GENERATION_GL_ITERS} Griffin-Lim iterations; target >= 10x real time)")

    # -- inverse quality on real audio, at full band ----------------------------
    spec = model.spec
    wave = demo_wave(spec.sample_rate)
    feats = log_features(wave, spec)
    print("\ninverse of true features, 10 s of demo audio     full-band LSD (dB)   ms per s of audio")
    for n in (8, 16, GENERATION_GL_ITERS, 32, 64):
        t0 = time.perf_counter()
        out = features_to_wave(feats, spec, n)
        took = time.perf_counter() - t0
        print(f"  {n:3d} iterations{'':31}{log_spectral_distance(wave.numpy(), out.numpy()):8.2f}{took / SECONDS * 1000:16.0f}")

    # -- the sound-control analysis ---------------------------------------------
    import soundfile as sf

    from sda_web.audio.demo import write_demo_sounds
    from sda_web.generation.controls import analyse

    with tempfile.TemporaryDirectory() as tmp:
        files = write_demo_sounds(Path(tmp), count=20)
        seconds = sum(sf.info(str(f)).duration for f in files)
        steps = []
        t0 = time.perf_counter()
        result = analyse(model, files, progress=lambda done, total: steps.append(done))
        took = time.perf_counter() - t0
    print(f"\nsound-control analysis of 20 demo files ({seconds:.0f} s of audio, {result.segment_count} segments): "
          f"{took:.2f} s (target < 10 s), {len(steps)} progress reports")

    # -- GPU ---------------------------------------------------------------------
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            print("\nGPU: not available on this machine (torch.cuda.is_available() is False); CPU numbers only.")
        else:
            gpu_model = load_trained_model(run_dir, device=args.device) if args.run else default_model(args.device)
            time_generation(gpu_model, analysis, args.device)  # warm-up (cuFFT plans, kernels)
            gpu = time_generation(gpu_model, analysis, args.device)
            print(f"\nGPU ({torch.cuda.get_device_name()}): model {gpu['model'] * 1000:.1f} ms, band inverse "
                  f"{gpu['band_inverse'] * 1000:.1f} ms, Griffin-Lim {gpu['griffin_lim'] * 1000:.1f} ms -> "
                  f"{gpu['rtf']:.0f}x real time ({gpu['rtf'] / rows[0][2]['rtf']:.1f}x the CPU)")
    else:
        print("\nGPU: not measured (run with --device cuda on a machine with one).")


if __name__ == "__main__":
    main()
