"""Sound quality at full band, the old pipeline beside the new one, in one run.

For each dataset (real recorded drum kits from Debian's hydrogen-drumkits, and
the demo set) both pipelines train a default Balanced model (one torch
thread); the old one from a checkout of BASELINE (the last commit with the
24 kHz, 80-mel features), the new one from this tree. Then, against the
original files at their own sample rate (STFT n_fft 2048, hop 512, both
floored 80 dB below the original's peak):

  ceiling LSD   true features -> waveform: the best a pipeline can sound
  VAE LSD       held-out (validation) files encoded, decoded, inverted
  top octave    energy above 12 kHz kept, output / original, for cymbals and
                hi-hats (held-out ones; all of the kit's if none was held out)
  epoch s       seconds per epoch (median, previews and checkpoints included)
  preview %     preview time as a share of the mean epoch
  gen x RT      10 s generated from the model, times faster than real time

    apt-get install -y --no-install-recommends hydrogen-drumkits
    python bench/sound_quality.py                 # Millo_MultiLayered2, ForzeeStereo, demo
    python bench/sound_quality.py --kits demo --epochs 40
    python bench/sound_quality.py --spectrograms DIR   # sox PNGs of a generated and a source cymbal
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BASELINE = "ef82a7c"  # 24 kHz, 80 mel bands, NNLS + Griffin-Lim
KITS_DIR = Path("/usr/share/hydrogen/data/drumkits")
DEFAULT_KITS = ("Millo_MultiLayered2", "ForzeeStereo", "demo")
BRIGHT = ("crash", "ride", "hat", "hh", "cymbal", "china", "splash")


def log_spectral_distance(reference, estimate, n_fft: int = 2048, hop: int = 512, floor_db: float = 80.0) -> float:
    """Mean over frames of the RMS difference (dB) of the log power spectra, both floored
    floor_db below the reference's peak."""
    import torch

    n = min(len(reference), len(estimate))
    window = torch.hann_window(n_fft)
    spectra = [torch.stft(torch.as_tensor(x[:n]).float(), n_fft, hop, window=window, return_complex=True).abs().square()
               for x in (reference, estimate)]
    floor = spectra[0].max() * 10 ** (-floor_db / 10)
    ref_db, est_db = (10 * torch.log10(s.clamp(min=floor)) for s in spectra)
    return float((ref_db - est_db).square().mean(dim=0).sqrt().mean())


def top_octave_kept(reference, estimate, rate: int, above_hz: float = 12_000.0) -> float:
    import numpy as np

    n = min(len(reference), len(estimate))
    freqs = np.fft.rfftfreq(n, 1 / rate) >= above_hz
    ref, est = (float((np.abs(np.fft.rfft(x[:n])) ** 2)[freqs].sum()) for x in (reference, estimate))
    return est / ref if ref > 0 else float("nan")


def load_at(path: Path, rate: int):
    from sda_web.audio.io import load_mono

    return load_mono(path, rate)


def score(out_dir: Path) -> dict:
    """The metrics of one worker's output, against the dataset's stored originals."""
    import soundfile as sf

    summary = json.loads((out_dir / "summary.json").read_text())
    audio_dir = Path(summary["dataset_dir"])
    val = summary["val_files"]

    def compare(name: str, kind: str):
        rate = sf.info(str(audio_dir / name)).samplerate
        original = load_at(audio_dir / name, rate)
        made = load_at(out_dir / f"{name}.{kind}.wav", rate)  # back at the original's own rate
        return original, made, rate

    ceiling = [log_spectral_distance(*compare(n, "ceiling")[:2]) for n in val]
    vae = [log_spectral_distance(*compare(n, "vae")[:2]) for n in val]
    bright_val = [n for n in val if any(b in n.lower() for b in BRIGHT)]
    bright = bright_val or [n for n in summary["train_files"] + val if any(b in n.lower() for b in BRIGHT)]
    tops = [top_octave_kept(*compare(n, "vae")) for n in bright]
    return {**summary, "ceiling_lsd": statistics.mean(ceiling), "vae_lsd": statistics.mean(vae),
            "top_octave": statistics.median(tops) if tops else float("nan"), "bright_files": len(bright),
            "bright_held_out": bool(bright_val)}


def run_worker(tree: Path, folder: Path, work: Path, epochs: int | None) -> Path:
    out = work / "out"
    cmd = [sys.executable, str(ROOT / "bench" / "_sound_quality_worker.py"), "--folder", str(folder),
           "--data-dir", str(work / "data"), "--out", str(out)]
    if epochs:
        cmd += ["--epochs", str(epochs)]
    env = {**os.environ, "PYTHONPATH": str(tree), "SDA_THREADS": "1"}
    subprocess.run(cmd, check=True, env=env, cwd=tree)
    return out


def kit_folder(kit: str, tmp: Path) -> Path:
    if kit == "demo":
        from sda_web.audio.demo import write_demo_sounds

        folder = tmp / "demo-sounds"
        write_demo_sounds(folder)
        return folder
    folder = KITS_DIR / kit
    if not folder.is_dir():
        sys.exit(f"{folder} is missing: apt-get install -y --no-install-recommends hydrogen-drumkits")
    return folder


def spectrograms(out_dir: Path, dest: Path, label: str) -> None:
    """sox spectrogram PNGs of the generated sound and of a cymbal's original and reconstruction."""
    if not shutil.which("sox"):
        print("  (sox is not installed: no spectrogram pictures)")
        return
    dest.mkdir(parents=True, exist_ok=True)
    summary = json.loads((out_dir / "summary.json").read_text())
    names = summary["val_files"] + summary["train_files"]
    cymbal = next((n for n in names if any(b in n.lower() for b in BRIGHT)), names[0])
    pictures = {"generated": out_dir / "generated.wav", "source": Path(summary["dataset_dir"]) / cymbal,
                "vae": out_dir / f"{cymbal}.vae.wav"}
    for kind, path in pictures.items():
        png = dest / f"{label}-{kind}.png"
        subprocess.run(["sox", str(path), "-n", "remix", "-", "spectrogram", "-x", "600", "-y", "257",
                        "-z", "90", "-t", f"{label} {kind} ({path.name})", "-o", str(png)], check=False)
    print(f"  spectrograms: {dest}/{label}-*.png")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kits", nargs="+", default=list(DEFAULT_KITS), help="hydrogen kit names, or 'demo'")
    parser.add_argument("--epochs", type=int, default=None, help="override the default epochs (both sides)")
    parser.add_argument("--baseline", default=BASELINE, help="git revision of the old pipeline")
    parser.add_argument("--spectrograms", type=Path, default=None, help="write sox spectrogram PNGs here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        old_tree = tmp / "old-tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(old_tree), args.baseline],
                       check=True)
        try:
            rows = {}
            for kit in args.kits:
                folder = kit_folder(kit, tmp)
                for side, tree in (("old", old_tree), ("new", ROOT)):
                    print(f"== {kit}: training the {side} pipeline", flush=True)
                    out = run_worker(tree, folder, tmp / kit / side, args.epochs)
                    rows[kit, side] = score(out)
                    if args.spectrograms:
                        spectrograms(out, args.spectrograms, f"{kit}-{side}")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old_tree)], check=False)

    print()
    print(f"{'dataset':22}{'pipeline':10}{'rate':>7}{'bands':>6}{'ceiling dB':>11}{'VAE dB':>8}{'>12k kept':>10}"
          f"{'epoch s':>9}{'preview %':>10}{'gen x RT':>9}")
    for kit in args.kits:
        for side in ("old", "new"):
            r = rows[kit, side]
            preview = 100 * r["preview_s_per_epoch"] / r["epoch_s_mean"]
            print(f"{kit[:21]:22}{side:10}{r['rate']:>7}{r['bands']:>6}{r['ceiling_lsd']:>11.2f}{r['vae_lsd']:>8.2f}"
                  f"{r['top_octave']:>10.2f}{r['epoch_s_median']:>9.3f}{preview:>9.1f}%{r['generate_10s_realtime']:>9.1f}")
        old, new = rows[kit, "old"], rows[kit, "new"]
        held = "held-out" if new["bright_held_out"] else "all (none held out)"
        print(f"{'':22}{'new/old':10}{'':13}{new['ceiling_lsd'] / old['ceiling_lsd']:>11.2f}"
              f"{new['vae_lsd'] / old['vae_lsd']:>8.2f}{'':10}{new['epoch_s_median'] / old['epoch_s_median']:>9.2f}"
              f"   ({new['files']} files, {new['epochs']} epochs; top octave over {new['bright_files']} {held} cymbals/hats)")
    print("\ntargets: ceiling <= 4 dB, VAE <= 6 dB, top octave >= 0.30, epoch <= 1.5x old, previews <= 10%, gen >= 10x")


if __name__ == "__main__":
    main()
