"""Sound quality of the model, the baseline beside this tree, in one run.

For each dataset (real recorded drum kits from Debian's hydrogen-drumkits, and
the demo set) both sides train a default Balanced model (one torch thread):
the baseline from a checkout of BASELINE (the last commit with the segment
model), this tree's from here. About 80% of the files train, the rest are held
out (the app's own split). Then, against the originals at their own rate
(`_sound_metrics.py` has the textbook definitions):

  ceiling LSD    true features -> waveform: the best the features allow; beside
                 it ("+fades") the same through the 2/10-ms fades every sound the
                 app writes gets (they cost the inverse alone about 0.28 dB: its
                 first samples carry energy the metric's reflect-padded first
                 frame rewards). "x" is the model against that finished ceiling,
                 like with like, since the transform's output has the fades too
  LSD train/val  `sda transform --variation 0` (encode, decode, level match) on
                 the training files and on the held-out ones, and as x ceiling
  hiss           median excess in the cells more than 60 dB below the peak, dB
                 (the inverse alone beside it)
  flutter        envelope roughness of the output / the original's, median over
                 the kicks, toms and other smooth-decaying hits
  onsets         generated variations (variation 1, seeds 1..N, the new model's
                 default length) with exactly one onset, of N
  length         median decay time (to -40 dB) of the variations / of the files
  FD             Fréchet distance between descriptor vectors of the variations
                 and of the real files (lower is closer to real sounds)
  copy LSD       median LSD from a variation to its nearest training file (above
                 the ceiling: new sounds, not copies)
  epoch s, gen x RT, transform x RT, checkpoint MB

    apt-get install -y --no-install-recommends hydrogen-drumkits
    python bench/sound_quality.py                 # Millo_MultiLayered2, ForzeeStereo, demo
    python bench/sound_quality.py --kits demo --epochs 40 --generate 16
    python bench/sound_quality.py --spectrograms docs/sound   # sox PNGs: original, baseline, new
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
sys.path.insert(0, str(ROOT / "bench"))
BASELINE = "d6f34a1"  # the segment model: one 64-d latent per 1-s segment, transposed convolutions
KITS_DIR = Path("/usr/share/hydrogen/data/drumkits")
DEFAULT_KITS = ("Millo_MultiLayered2", "ForzeeStereo", "demo")
SMOOTH = ("bd", "kick", "tom", "rim")  # hits whose decay is smooth in the original
PICTURES = (("kick", ("bd_", "kick")), ("cowbell", ("cowbell", "agogo", "bell")), ("crash", ("crash",)))


def load_at(path: Path, rate: int):
    from sda_web.audio.io import load_mono

    return load_mono(path, rate)


def score(out_dir: Path) -> dict:
    """The metrics of one worker's output, against the dataset's stored originals."""
    import numpy as np
    import soundfile as sf

    import _sound_metrics as m

    summary = json.loads((out_dir / "summary.json").read_text())
    audio_dir = Path(summary["dataset_dir"])
    rate = summary["rate"]
    originals = {n: load_at(audio_dir / n, rate) for n in summary["train_files"] + summary["val_files"]}

    def made(name: str, kind: str):
        return load_at(out_dir / f"{name}.{kind}.wav", rate)

    rows = {}
    for split in ("train_files", "val_files"):
        names = summary[split]
        rows[split] = {
            "ceiling": statistics.mean(m.lsd(originals[n], made(n, "ceiling")) for n in names),
            "ceiling_finished": statistics.mean(m.lsd(originals[n], made(n, "ceiling-finished")) for n in names),
            "lsd": statistics.mean(m.lsd(originals[n], made(n, "vae")) for n in names),
        }
    names = summary["train_files"] + summary["val_files"]
    hiss = [m.hiss(originals[n], made(n, "vae")) for n in names]
    hiss_ceiling = [m.hiss(originals[n], made(n, "ceiling")) for n in names]
    smooth = [n for n in names if n.lower().startswith(SMOOTH) or any(s in n.lower() for s in ("kick", "tom"))]
    flutter = [m.roughness(made(n, "vae")) / m.roughness(originals[n]) for n in smooth
               if m.roughness(originals[n]) > 0]
    generated = sorted(out_dir.glob("gen-*.wav"), key=lambda p: int(p.stem.split("-")[1]))
    gen = [sf.read(str(p), dtype="float32")[0] for p in generated]
    one_onset = sum(len(m.onsets(w, rate)) == 1 for w in gen)
    gen_decay = statistics.median(m.decay_seconds(w, rate) for w in gen)
    file_decay = statistics.median(m.decay_seconds(w, rate) for w in originals.values())
    real = np.stack([m.descriptors(w, rate) for w in originals.values()])
    fake = np.stack([m.descriptors(w, rate) for w in gen])
    train = [originals[n] for n in summary["train_files"]]
    nearest = [min(m.lsd(t, w) for t in train) for w in gen[:16]]
    return {**summary, "train": rows["train_files"], "val": rows["val_files"],
            "hiss": float(np.nanmedian(hiss)), "hiss_ceiling": float(np.nanmedian(hiss_ceiling)),
            "flutter": statistics.median(flutter) if flutter else float("nan"), "smooth_files": len(smooth),
            "one_onset": one_onset, "generated": len(gen), "length_ratio": gen_decay / file_decay,
            "file_decay_s": file_decay, "fd": m.frechet_distance(fake, real), "copy_lsd": statistics.median(nearest)}


def run_worker(tree: Path, folder: Path, work: Path, epochs: int | None, generate: int, duration: float) -> Path:
    out = work / "out"
    cmd = [sys.executable, str(ROOT / "bench" / "_sound_quality_worker.py"), "--folder", str(folder),
           "--data-dir", str(work / "data"), "--out", str(out), "--generate", str(generate),
           "--duration", str(duration)]
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


def typical_seconds(folder: Path) -> float:
    """The new model's default length for this folder: the median file length (0.5..10 s)."""
    import soundfile as sf

    from sda_web.generation.settings import default_duration

    lengths = sorted(sf.info(str(p)).duration for p in folder.iterdir() if p.suffix.lower() in (".wav", ".flac"))
    return default_duration(statistics.median(lengths))


def spectrograms(outs: dict, dest: Path, kit: str) -> None:
    """sox spectrogram PNGs of a kick, a cowbell and a crash: original, baseline, new."""
    if not shutil.which("sox"):
        print("  (sox is not installed: no spectrogram pictures)")
        return
    dest.mkdir(parents=True, exist_ok=True)
    summary = json.loads((outs["new"] / "summary.json").read_text())
    names = summary["val_files"] + summary["train_files"]
    for label, keys in PICTURES:
        name = next((n for n in names if any(k in n.lower() for k in keys)), None)
        if name is None:
            continue
        pictures = {"original": Path(summary["dataset_dir"]) / name,
                    "baseline": outs["old"] / f"{name}.vae.wav", "new": outs["new"] / f"{name}.vae.wav"}
        for kind, path in pictures.items():
            png = dest / f"{kit}-{label}-{kind}.png"
            subprocess.run(["sox", str(path), "-n", "remix", "-", "spectrogram", "-x", "500", "-y", "257",
                            "-z", "90", "-t", f"{kit} {label} {kind} ({name})", "-o", str(png)], check=False)
    for side in ("old", "new"):
        png = dest / f"{kit}-generated-{'baseline' if side == 'old' else 'new'}.png"
        subprocess.run(["sox", str(outs[side] / "gen-1.wav"), "-n", "spectrogram", "-x", "500", "-y", "257", "-z", "90",
                        "-t", f"{kit} generated, variation 1, seed 1 ({side})", "-o", str(png)], check=False)
    print(f"  spectrograms: {dest}/{kit}-*.png")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kits", nargs="+", default=list(DEFAULT_KITS), help="hydrogen kit names, or 'demo'")
    parser.add_argument("--epochs", type=int, default=None, help="override the default epochs (both sides)")
    parser.add_argument("--generate", type=int, default=64, help="variations generated per side")
    parser.add_argument("--baseline", default=BASELINE, help="git revision of the baseline")
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
                duration = typical_seconds(folder)
                outs = {}
                for side, tree in (("old", old_tree), ("new", ROOT)):
                    print(f"== {kit}: training the {side} model", flush=True)
                    outs[side] = run_worker(tree, folder, tmp / kit / side, args.epochs, args.generate, duration)
                    rows[kit, side] = score(outs[side])
                if args.spectrograms:
                    spectrograms(outs, args.spectrograms, kit)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old_tree)], check=False)

    print()
    print(f"{'dataset':20}{'model':6}{'ceil tr':>8}{'+fades':>7}{'LSD tr':>7}{'x':>5}{'ceil va':>8}{'+fades':>7}"
          f"{'LSD va':>7}{'x':>5}"
          f"{'hiss':>6}{'(inv)':>6}{'flutter':>8}{'1 onset':>8}{'length':>7}{'FD':>7}{'copy':>6}"
          f"{'epoch s':>8}{'gen xRT':>8}{'tf xRT':>7}{'MB':>6}")
    for kit in args.kits:
        for side in ("old", "new"):
            r = rows[kit, side]
            tr, va = r["train"], r["val"]
            print(f"{kit[:19]:20}{side:6}{tr['ceiling']:>8.2f}{tr['ceiling_finished']:>7.2f}{tr['lsd']:>7.2f}"
                  f"{tr['lsd'] / tr['ceiling_finished']:>5.2f}{va['ceiling']:>8.2f}{va['ceiling_finished']:>7.2f}"
                  f"{va['lsd']:>7.2f}{va['lsd'] / va['ceiling_finished']:>5.2f}"
                  f"{r['hiss']:>6.1f}{r['hiss_ceiling']:>6.1f}{r['flutter']:>8.2f}"
                  f"{r['one_onset']:>4}/{r['generated']:<3}{r['length_ratio']:>7.2f}{r['fd']:>7.1f}{r['copy_lsd']:>6.2f}"
                  f"{r['epoch_s_median']:>8.3f}{r['generate_realtime']:>8.1f}{r['transform_realtime']:>7.1f}"
                  f"{r['checkpoint_mb']:>6.1f}")
        old, new = rows[kit, "old"], rows[kit, "new"]
        print(f"{'':20}{'new/old epoch time':>26} {new['epoch_s_median'] / old['epoch_s_median']:.2f}"
              f"   ({new['files']} files, {new['epochs']} epochs, {len(new['train_files'])} trained; "
              f"variations {new['duration']:g} s; flutter over {new['smooth_files']} smooth hits; "
              f"files decay in {new['file_decay_s']:.2f} s)")
    print("\ntargets: LSD train <= 1.2x ceiling, held-out <= 1.35x; hiss within 3 dB of the inverse's; flutter <= 1.5;"
          " one onset 16/16; length 0.5-2x; FD <= baseline's; copy LSD > ceiling; epoch <= 2x; gen and tf >= 10x RT;"
          " checkpoint <= 50 MB")


if __name__ == "__main__":
    main()
