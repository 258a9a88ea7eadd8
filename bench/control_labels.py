"""Do the sound controls do what their names say, on the sounds the model makes?

For a default Balanced model of each dataset (the demo set, and real drum kits
from Debian's hydrogen-drumkits), every control is set to -2, -1, 0, +1, +2 and
8 seeded variations are generated at each value (synth.generate, the normal
variation amount, long enough to ring out: twice the model's typical sound,
at least its 1.5-s head, at most 6 s). The control's feature is measured on the generated
*waveforms* (re-analysed), and the Spearman rho between slider value and
feature is averaged over the 8 seeds. "rho transform": the same over 8 of the
dataset's own files, each transformed (`sda transform --variation 0`) with the
control at each value, with room after it to ring out (its range and crosstalk are printed
last, after "transform:"). Printed beside it: the rho the analysis
measured on the decoder's output when it named the control, and the effect it
promises ("+1 ≈ ...") next to the effect measured on the generated sounds.
A named control should show rho >= 0.9 on generated sounds; "texture N" ones
show, for reference, the feature that moved most monotonically. Also printed: the
range over -2..+2 (centroid in octaves, RMS level in dB, decay as a ratio, pitch in
semitones) and the crosstalk, the largest |rho| of another core feature (brightness,
loudness, decay, pitch) among those that change audibly over -2..+2 (JUST_NOTICEABLE), with
the largest |rho| of any size beside it. The descriptors are the analysis's own, on the generated
waveforms' band features: centroid of the band energies, RMS level, the time until the
energy stays 40 dB below its peak, the energy-weighted frequency of the strongest band.

    python bench/control_labels.py                       # demo, Millo_MultiLayered2
    python bench/control_labels.py --kits demo ForzeeStereo --epochs 60
    python bench/control_labels.py --kits Millo_MultiLayered2 --seed 2   # another training draw
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("SDA_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SWEEP = (-2.0, -1.0, 0.0, 1.0, 2.0)
SEEDS = 8
SOURCES = 8  # dataset files transformed with each control (issue 15: "transform included")


def train(data_dir: Path, folder: Path, epochs: int | None, seed: int | None = None) -> Path:
    from sda_web.datasets import import_folder
    from sda_web.generation.after_training import analyse_trained_run
    from sda_web.training import TrainingCompleteEvent, TrainingRunner, get_adaptive_config, list_runs
    from sda_web.training.config import checkpoint_interval, preview_interval

    manifest = import_folder(data_dir, folder, name="bench")
    config = get_adaptive_config(manifest.file_count, "balanced")
    if epochs:
        config = dataclasses.replace(config, epochs=epochs, preview_every=preview_interval(epochs),
                                     checkpoint_every=checkpoint_interval(epochs))
    if seed is not None:  # another draw of the same training: how much the controls owe to luck
        config = dataclasses.replace(config, seed=seed)
    done = []
    runner = TrainingRunner(data_dir, after_training=analyse_trained_run)
    runner.start("bench", config, lambda e: done.append(e) if isinstance(e, TrainingCompleteEvent) else None)
    runner.wait()
    assert done and done[0].outcome == "completed", done
    print(f"  trained {manifest.file_count} files, {config.epochs} epochs")
    return list_runs(data_dir)[0].run_dir


def generated_features(model, analysis, label: str, value: float):
    """Features (EFFECT_UNITS' scale) of SEEDS generated 1-s sounds with `label` at `value`."""
    import torch

    from sda_web.audio.features import log_features
    from sda_web.generation import synth
    from sda_web.generation.analysis import FEATURES
    from sda_web.audio.descriptors import effect_scale, segment_features

    # long enough for the sounds to ring out (at least 1 s), as the analysis measures decay
    seconds = max(1.0, model.decay_frames() * model.spec.hop_length / model.spec.sample_rate)
    waves = synth.generate(model, analysis, seed=11, variations=SEEDS, duration_s=seconds, controls={label: value})
    feats = torch.stack([log_features(torch.from_numpy(w), model.spec) for w in waves])
    measured = segment_features(feats, model.spec)
    return {name: effect_scale(name, measured[name]) for name in FEATURES}


def source_sounds(model, folder: Path) -> list:
    """SOURCES of the dataset's files, evenly spread through them by name, at the model's rate, each
    followed by silence up to the decay window: a transform is as long as its source, so without
    room after it a longer decay would be cut where the file ends."""
    import numpy as np

    from sda_web.generation.transform import load_source

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".wav", ".flac"))
    chosen = [files[k * len(files) // SOURCES] for k in range(min(SOURCES, len(files)))]
    window = model.decay_frames() * model.spec.hop_length
    sounds = []
    for path in chosen:
        wave = load_source(path, model.spec.sample_rate)
        sounds.append(np.concatenate([wave, np.zeros(max(0, window - len(wave)), np.float32)]))
    return sounds


def transformed_features(model, analysis, label: str, value: float, sources: list):
    """Features (EFFECT_UNITS' scale) of each source transformed with `label` at `value` (variation 0:
    the controls alone move it), as `generated_features` measures them."""
    import torch

    from sda_web.audio.descriptors import effect_scale, segment_features
    from sda_web.audio.features import log_features
    from sda_web.generation.analysis import FEATURES
    from sda_web.generation.settings import GenerationSettings
    from sda_web.generation.transform import transform_variation

    settings = GenerationSettings(seed=1, variation_amount=0.0, controls={label: value}).validated(analysis)
    feats = [log_features(torch.from_numpy(transform_variation(model, analysis, w, settings, 0)), model.spec)
             for w in sources]
    frames = min(f.shape[-1] for f in feats)
    measured = segment_features(torch.stack([f[..., :frames] for f in feats]), model.spec)
    return {name: effect_scale(name, measured[name]) for name in FEATURES}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kits", nargs="+", default=["demo", "Millo_MultiLayered2"])
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None, help="training seed (default: the app's)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    from bench.sound_quality import kit_folder
    from sda_web.generation.analysis import EFFECT_UNITS, FEATURES, _human, load_analysis
    from sda_web.generation.controls import _spearman_with_sweep
    from sda_web.generation.loading import load_trained_model

    for kit in args.kits:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            print(f"== {kit}", flush=True)
            folder = kit_folder(kit, tmp)
            run_dir = train(tmp / "data", folder, args.epochs, args.seed)
            model, analysis = load_trained_model(run_dir), load_analysis(run_dir)
            sources = source_sounds(model, folder)
            print(f"  {'control':12}{'feature':12}{'rho decoder':>12}{'rho generated':>14}{'rho transform':>14}   "
                  f"{'promised':22}{'measured':>22}{'range -2..+2':>16}  crosstalk (largest |rho| of another core "
                  "feature)")
            for control in analysis.controls:
                sweep = [generated_features(model, analysis, control.label, v) for v in SWEEP]
                rho = {f: float(_spearman_with_sweep(torch.stack([s[f] for s in sweep], dim=1)).mean()) for f in FEATURES}
                feature = control.feature or max(rho, key=lambda f: abs(rho[f]))
                moved_sources = [transformed_features(model, analysis, control.label, v, sources) for v in SWEEP]
                rho_tf = {f: float(_spearman_with_sweep(torch.stack([s[f] for s in moved_sources], dim=1)).mean())
                          for f in FEATURES}  # the same figures for the transformed sources
                rho_transform = rho_tf[feature]
                moved_tf = {f: change(f, moved_sources[0][f].mean(), moved_sources[-1][f].mean()) for f in CORE}
                others_tf = {f: abs(rho_tf[f]) if moved_tf[f] > JUST_NOTICEABLE[f] else 0.0 for f in CORE if f != feature}
                cross_tf = max(others_tf, key=others_tf.get)
                slope = float(sum((v * sweep[i][feature].mean()) for i, v in enumerate(SWEEP)) / sum(v * v for v in SWEEP))
                measured = (f"+1 ≈ {2 ** slope:.2g}x longer" if feature == "decay"
                            else f"+1 ≈ {_human(slope)} {EFFECT_UNITS[feature]}")
                # crosstalk: the largest |rho| of another core feature that moves audibly (by more than
                # its JUST_NOTICEABLE change over -2..+2); a feature a gain leaves unchanged still shows
                # a monotone rounding-sized drift (the -120 dB floor), which rho alone calls 1.0
                moved = {f: change(f, sweep[0][f].mean(), sweep[-1][f].mean()) for f in CORE}
                others = {f: abs(rho[f]) if moved[f] > JUST_NOTICEABLE[f] else 0.0 for f in CORE if f != feature}
                raw = {f: abs(rho[f]) for f in CORE if f != feature}
                cross, worst_raw = max(others, key=others.get), max(raw, key=raw.get)
                print(f"  {control.label:12}{feature:12}{control.correlation if control.feature else float('nan'):>12.2f}"
                      f"{rho[feature]:>14.2f}{rho_transform:>14.2f}   {control.effect or '(texture)':22}{measured:>22}"
                      f"{span(feature, sweep[0][feature].mean(), sweep[-1][feature].mean()):>16}  "
                      f"{cross} {others[cross]:.2f} ({span(cross, sweep[0][cross].mean(), sweep[-1][cross].mean())}); "
                      f"any size: {worst_raw} {raw[worst_raw]:.2f}; transform: "
                      f"{span(feature, moved_sources[0][feature].mean(), moved_sources[-1][feature].mean())}, "
                      f"{cross_tf} {others_tf[cross_tf]:.2f}", flush=True)


CORE = ("brightness", "loudness", "decay", "pitch")  # issue 15's core controls
# The smallest change over -2..+2 that counts as crosstalk, on EFFECT_UNITS' scale: 0.1 octave of
# centroid, 1 dB, 10% longer, half a semitone (about the just-noticeable differences of each).
JUST_NOTICEABLE = {"brightness": 0.1, "loudness": 1.0, "decay": 0.1375, "pitch": 0.5 / 12}


def change(feature: str, low, high) -> float:
    """|change| from -2 to +2 on the scale of JUST_NOTICEABLE (centroid in octaves)."""
    import math
    low, high = float(low), float(high)
    if feature == "brightness":
        return abs(math.log2(max(high, 1.0) / max(low, 1.0)))
    return abs(high - low)


def span(feature: str, low, high) -> str:
    """The change from -2 to +2 in the issue's units (means over the seeds, on EFFECT_UNITS' scale)."""
    low, high = float(low), float(high)
    if feature == "brightness":
        import math
        return f"{math.log2(max(high, 1.0) / max(low, 1.0)):+.2f} oct"
    if feature == "loudness":
        return f"{high - low:+.1f} dB"
    if feature == "decay":  # log2 seconds
        return f"x{2 ** (high - low):.2f}"
    if feature == "pitch":  # octaves
        return f"{12 * (high - low):+.1f} st"
    return f"{high - low:+.2g}"


if __name__ == "__main__":
    main()
