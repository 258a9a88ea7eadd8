"""Start from an existing model, or from scratch? Held-out LSD at equal epochs, side by side.

A base model is trained (default Balanced) on one whole kit. Then, for each
target kit, a handful of its files (every k-th, sorted by name) become a small
dataset, and two runs train on it for the same epochs, same seed, same split:
one from scratch, one started from the base model (`sda train --from`). Each
is scored on its held-out files: `sda transform --variation 0` (encode, decode,
level match) against the originals, full-band LSD (`_sound_metrics.lsd`:
n_fft 2048, hop 512, 80 dB floor), mean over the held-out files and over the
training files. Lower is closer. One torch thread. Not a pass/fail test.

    apt-get install -y --no-install-recommends hydrogen-drumkits
    python bench/start_from.py                           # base Millo_MultiLayered2; Colombo, Forzee
    python bench/start_from.py --files 8 --epochs 30 100
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
KITS_DIR = Path("/usr/share/hydrogen/data/drumkits")


def train(data_dir: Path, dataset: str, epochs: int | None, start_from: str | None, val_fraction: float) -> str:
    from sda_web.datasets import load_dataset
    from sda_web.generation.after_training import analyse_trained_run
    from sda_web.training import TrainingRunner, get_adaptive_config

    manifest = load_dataset(data_dir, dataset)
    config = get_adaptive_config(manifest.file_count).with_overrides(epochs=epochs, patience=0,
                                                                     val_fraction=val_fraction)
    runner = TrainingRunner(data_dir, after_training=analyse_trained_run, in_process=True)
    outcome = []
    run_id = runner.start(dataset, config, lambda e: outcome.append(e), start_from=start_from)
    runner.wait()
    done = outcome[-1]
    if done.outcome != "completed":
        sys.exit(f"run {run_id} {done.outcome}: {done.error}")
    return run_id


def held_out_lsd(data_dir: Path, run_id: str) -> tuple[float, float]:
    """Mean LSD of the plain reconstructions of the run's held-out and training files."""
    import _sound_metrics as m
    from sda_web.audio.io import load_mono
    from sda_web.library import SoundRequest
    from sda_web.library.sounds import transform_file
    from sda_web.storage import read_json

    run_dir = data_dir / "runs" / run_id
    record = read_json(run_dir / "run.json")
    audio = data_dir / "datasets" / record["dataset"] / "audio"
    scores = {}
    for split in ("val_files", "train_files"):
        values = []
        for name in record[split]:
            made = transform_file(data_dir, SoundRequest(model=run_id, seed=1, variation_amount=0.0), audio / name)
            values.append(m.lsd(load_mono(audio / name, made.sample_rate), made.waves[1]))
        scores[split] = statistics.mean(values)
    return scores["val_files"], scores["train_files"]


def small_kit(kit: str, count: int, dest: Path) -> Path:
    files = sorted(p for p in (KITS_DIR / kit).iterdir() if p.suffix.lower() in (".wav", ".flac"))
    step = max(1, len(files) // count)
    folder = dest / kit
    folder.mkdir(parents=True)
    for path in files[::step][:count]:
        shutil.copy(path, folder / path.name)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="Millo_MultiLayered2")
    parser.add_argument("--targets", nargs="+", default=["ColomboAcousticDrumkit", "ForzeeStereo"])
    parser.add_argument("--files", type=int, default=10, help="files of each target kit (30%% held out)")
    parser.add_argument("--epochs", type=int, nargs="+", default=[30, 100], help="equal budgets to compare")
    parser.add_argument("--base-epochs", type=int, default=None, help="the base model's (default: its preset's)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from sda_web.datasets import import_folder

    for kit in [args.base, *args.targets]:
        if not (KITS_DIR / kit).is_dir():
            sys.exit(f"{KITS_DIR / kit} is missing: apt-get install -y --no-install-recommends hydrogen-drumkits")
    with tempfile.TemporaryDirectory(prefix="sda-start-from-") as tmp:
        data_dir = Path(tmp) / "data"
        base_set = import_folder(data_dir, KITS_DIR / args.base, name="base").name
        base = train(data_dir, base_set, args.base_epochs, None, 0.2)
        print(f"base model: {args.base}, {base}")
        print(f"{'target kit':24} {'epochs':>6} {'held-out LSD':>26} {'train LSD':>24}")
        print(f"{'':24} {'':>6} {'scratch':>8} {'from base':>9} {'ratio':>7} {'scratch':>8} {'from base':>9} {'ratio':>5}")
        for kit in args.targets:
            name = import_folder(data_dir, small_kit(kit, args.files, Path(tmp) / "small"), name=f"small-{kit}").name
            for epochs in args.epochs:
                scratch = held_out_lsd(data_dir, train(data_dir, name, epochs, None, 0.3))
                started = held_out_lsd(data_dir, train(data_dir, name, epochs, base, 0.3))
                print(f"{kit:24} {epochs:6d} {scratch[0]:8.2f} {started[0]:9.2f} {started[0] / scratch[0]:7.2f}x "
                      f"{scratch[1]:8.2f} {started[1]:9.2f} {started[1] / scratch[1]:5.2f}x", flush=True)


if __name__ == "__main__":
    main()
