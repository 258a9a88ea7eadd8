"""Generation speed: real-time factor (seconds of audio per second of compute) for
10 s of audio, broken down into model (latent path + decoding + crossfades),
mel inverse (pseudo-inverse + NNLS) and Griffin-Lim, side by side with the
earlier approach's inverse (torchaudio GriffinLim, 128 iterations) on the very
same mel, in the same run. Target on the CPU: at least 10x real time (the
earlier implementation of this design managed about 1.1x).

Also: the inverse's quality at each setting, as mel log-spectral distance
(dB, top 60 dB) and spectral inconsistency, measured on 10 s of real audio
(the demo set), where the target is known; and the sound-control analysis
time for a 20-file dataset (target under 10 s).

    python bench/generate_speed.py                   # a default-size model (random weights: speed only)
    python bench/generate_speed.py --data-dir D --run RUN_ID   # a trained model
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


def default_model(device: str):
    """A model of the default size (width 192, latent 64, 96 frames) with seeded random
    weights: decoding costs the same whatever the weights are."""
    import torch

    from sda_web.audio.features import MelSpec
    from sda_web.generation.loading import TrainedModel
    from sda_web.model import ConvVAE, ModelShape
    from sda_web.training import get_adaptive_config
    from sda_web.training.data import FeatureStats, segment_frames

    config = get_adaptive_config(20)
    spec = MelSpec()
    shape = ModelShape(n_mels=spec.n_mels, frames=segment_frames(spec, config.segment_seconds),
                       latent_dim=config.latent_dim, width=config.width, dropout=config.dropout)
    torch.manual_seed(0)
    model = ConvVAE(shape).to(device).eval()
    return TrainedModel(model, spec, FeatureStats(mean=-6.0, std=3.0), shape, 0, torch.device(device))


def best_of(fn, repeats: int = REPEATS):
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def time_generation(model, analysis, device: str) -> dict:
    from sda_web.generation.synth import SynthTimings, generate

    runs = []
    for seed in range(REPEATS):
        timings = SynthTimings()
        generate(model, analysis, seed=seed, duration_s=SECONDS, timings=timings)
        runs.append(timings)
    best = min(runs, key=lambda t: t.total_s)
    return {"model": best.model_s, "mel_inverse": best.mel_inverse_s, "griffin_lim": best.griffin_lim_s,
            "total": best.total_s, "rtf": best.realtime_factor, "device": device}


def generated_mel(model, analysis):
    """The 10-s log-mel that generation inverts (seed 0), on the CPU."""
    import math

    import torch

    from sda_web.generation import synth
    from sda_web.generation.settings import GenerationSettings

    spec = model.spec
    frames = math.ceil(SECONDS * spec.sample_rate / spec.hop_length) + 1
    count, hop = synth.segment_layout(frames, model.frames)
    settings = GenerationSettings(seed=0, duration_s=SECONDS).validated(analysis)
    with torch.no_grad():
        z = torch.from_numpy(synth.latent_path(model, analysis, settings, 0, count)).to(model.device)
        segments = model.stats.denormalise(model.model.decode(z)).float().cpu()
    return synth.overlap_add(segments, hop)[:, :frames]


def demo_mel(spec):
    """10 s of the demo set's sounds, back to back, as log-mel: a target with known audio."""
    import torch

    from sda_web.audio.demo import write_demo_sounds
    from sda_web.audio.features import log_mel
    from sda_web.audio.io import load_mono

    with tempfile.TemporaryDirectory() as tmp:
        waves = [torch.from_numpy(load_mono(p, spec.sample_rate)) for p in write_demo_sounds(Path(tmp), count=12)]
    wave = torch.cat(waves)[: int(SECONDS * spec.sample_rate)]
    return log_mel(wave, spec)


def quality(log_mel, wave, spec) -> tuple[float, float]:
    """(mel LSD in dB over the top 60 dB, spectral inconsistency of the result)."""
    import math

    import torch

    from sda_web.audio.features import log_mel as to_log_mel
    from sda_web.generation.inverse import mel_to_power

    again = to_log_mel(wave, spec)[:, : log_mel.shape[1]]
    floor = log_mel.max() - 60 / (10 / math.log(10))
    diff_db = (log_mel.clamp(min=floor) - again.clamp(min=floor)) * (10 / math.log(10))
    lsd = float(diff_db.square().mean(0).sqrt().mean())
    target = mel_to_power(torch.exp(log_mel), spec).sqrt()
    window = torch.hann_window(spec.n_fft)
    rebuilt = torch.stft(wave, spec.n_fft, spec.hop_length, window=window, return_complex=True).abs()
    n = min(target.shape[1], rebuilt.shape[1])
    return lsd, float((rebuilt[:, :n] - target[:, :n]).norm() / target[:, :n].norm())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--run", help="a trained run id in --data-dir (default: a default-size random model)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda: cuda adds a GPU column when one is available")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from sda_web.audio.features import mel_to_waveform
    from sda_web.generation.analysis import load_analysis
    from sda_web.generation.inverse import log_mel_to_wave
    from sda_web.generation.loading import load_trained_model
    from sda_web.generation.settings import GENERATION_GL_ITERS
    from sda_web.training import load_run

    if args.run:
        run_dir = load_run(args.data_dir, args.run).run_dir
        model, analysis = load_trained_model(run_dir), load_analysis(run_dir)
        source = f"trained model {args.run}"
    else:
        model, analysis = default_model("cpu"), None
        source = "default-size model (width 192, latent 64), random weights"
    spec = model.spec
    print(f"10 s of audio, 1 CPU thread, {source}; best of {REPEATS}")

    # -- ours, end to end --------------------------------------------------
    ours = time_generation(model, analysis, "cpu")
    mel = generated_mel(model, analysis)

    # -- inverses of the same mel ------------------------------------------
    def inverse(label, fn):
        seconds, _ = best_of(fn, 1 if "128" in label else REPEATS)
        return label, seconds

    inverses = [
        inverse(f"ours: NNLS sparse + fast GL, {GENERATION_GL_ITERS} it (generation)",
                lambda: log_mel_to_wave(mel, spec, GENERATION_GL_ITERS)),
        inverse("ours: fast GL, 32 it", lambda: log_mel_to_wave(mel, spec, 32)),
        inverse(f"torchaudio GriffinLim, {GENERATION_GL_ITERS} it",
                lambda: mel_to_waveform(mel, spec, GENERATION_GL_ITERS)),
        inverse("torchaudio GriffinLim, 32 it (previews)", lambda: mel_to_waveform(mel, spec, 32)),
        inverse("earlier approach: torchaudio GriffinLim, 128 it", lambda: mel_to_waveform(mel, spec, 128)),
    ]

    print("\nend to end (ours)")
    print(f"  model (path + decode + crossfade) {ours['model'] * 1000:7.1f} ms")
    print(f"  mel inverse (pinv + 30 NNLS)       {ours['mel_inverse'] * 1000:7.1f} ms")
    print(f"  Griffin-Lim ({GENERATION_GL_ITERS} it)               {ours['griffin_lim'] * 1000:7.1f} ms")
    print(f"  total                              {ours['total'] * 1000:7.1f} ms  ->  {ours['rtf']:.1f}x real time "
          f"(target 10x)")

    print("\ninverse of the same generated 10-s mel                time     RTF with the model")
    for label, seconds in inverses:
        print(f"  {label:50s} {seconds * 1000:7.0f} ms  {SECONDS / (seconds + ours['model']):6.1f}x")
    earlier = inverses[-1][1] + ours["model"]
    print(f"\nratio: ours end to end vs the earlier inverse (same model, same mel): "
          f"{earlier / ours['total']:.1f}x faster")
    print(f"ratio: our inverse vs audio.features' (torchaudio) at {GENERATION_GL_ITERS} it: "
          f"{inverses[2][1] / inverses[0][1]:.2f}x faster")

    # -- quality on real audio -----------------------------------------------
    target = demo_mel(spec)
    print("\ninverse quality on 10 s of demo-set audio     mel LSD (dB)   inconsistency   ms per s of audio")
    rows = [(f"ours, {n} it", lambda n=n: log_mel_to_wave(target, spec, n))
            for n in (8, 16, GENERATION_GL_ITERS, 32)]
    rows += [("torchaudio, 32 it", lambda: mel_to_waveform(target, spec, 32)),
             ("torchaudio, 128 it (earlier)", lambda: mel_to_waveform(target, spec, 128))]
    for label, fn in rows:
        seconds, wave = best_of(fn, 1)
        lsd, inconsistency = quality(target, wave, spec)
        print(f"  {label:42s} {lsd:8.2f}      {inconsistency:9.3f}       {seconds / SECONDS * 1000:8.0f}")

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
            print(f"\nGPU ({torch.cuda.get_device_name()}): model {gpu['model'] * 1000:.1f} ms, mel inverse "
                  f"{gpu['mel_inverse'] * 1000:.1f} ms, Griffin-Lim {gpu['griffin_lim'] * 1000:.1f} ms -> "
                  f"{gpu['rtf']:.0f}x real time ({gpu['rtf'] / ours['rtf']:.1f}x the CPU)")
    else:
        print("\nGPU: not measured (run with --device cuda on a machine with one).")


if __name__ == "__main__":
    main()
