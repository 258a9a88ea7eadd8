"""New or copy: how generated sounds sit against their nearest training file, and what it costs.

Trains a default model on a kit (or uses --data-dir/--model), then prints:
  * the dataset's sibling distances (each file to its nearest other file) and the
    model's reproduction distance (`generation/novelty.py` has the definitions);
  * for 8 variations at variation 1, 0.3 and 0.1 (seed 5): how many are near copies,
    their distances, and the time to find their nearest file beside the time to make them;
  * how many plain reconstructions of training files are flagged as copies of their own file.
One torch thread. Not a pass/fail test.

    python bench/new_or_copy.py                       # Millo_MultiLayered2
    python bench/new_or_copy.py --data-dir D --model M
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
KITS_DIR = Path("/usr/share/hydrogen/data/drumkits")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kit", default="Millo_MultiLayered2")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--model")
    args = parser.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(1)
    from sda_web.generation.controls import ensure_analysis, run_files
    from sda_web.generation.loading import load_trained_model
    from sda_web.generation.novelty import build_fingerprints, survey_copies
    from sda_web.library import SoundRequest, render, resolve_model
    from sda_web.library.sounds import transform_file

    with tempfile.TemporaryDirectory(prefix="sda-novelty-") as tmp:
        data = args.data_dir
        if data is None:
            from sda_web.datasets import import_folder
            from sda_web.generation.after_training import analyse_trained_run
            from sda_web.training import TrainingRunner, get_adaptive_config

            data = Path(tmp) / "data"
            manifest = import_folder(data, KITS_DIR / args.kit, name="kit")
            runner = TrainingRunner(data, after_training=analyse_trained_run, in_process=True)
            runner.start("kit", get_adaptive_config(manifest.file_count), lambda e: None)
            runner.wait()
        model = resolve_model(data, args.model or "latest")
        trained = load_trained_model(model.run_dir, model.weights)
        files = run_files(model.run_dir)
        t0 = time.perf_counter()
        prints = build_fingerprints(files, trained)
        print(f"{len(files)} files: fingerprints in {time.perf_counter() - t0:.2f} s; siblings median "
              f"{np.median(prints.siblings):.2f} dB ({prints.siblings.min():.2f}-{prints.siblings.max():.2f}); "
              f"reproduction {prints.reproduction_db:.2f} dB")
        print(f"survey (8 at variation 1, seed 0): {survey_copies(trained, ensure_analysis(model.run_dir, trained), prints):.0%} copies")
        for amount in (1.0, 0.3, 0.1):
            t0 = time.perf_counter()
            made = render(data, SoundRequest(model=model.model_id, seed=5, variations=8,
                                             duration_s=model.default_duration_s, variation_amount=amount))
            made_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            near = [prints.nearest(w, trained.spec) for w in made.waves.values()]
            near_s = time.perf_counter() - t0
            print(f"variation {amount}: {sum(n.copy for n in near)}/8 copies, distances "
                  f"{' '.join(f'{n.distance_db:.1f}' for n in near)} dB; nearest {near_s * 1000:.1f} ms = "
                  f"{near_s / made_s:.1%} of making them ({made_s:.2f} s)")
        own = 0
        sample = files[::max(1, len(files) // 10)]
        for path in sample:
            made = transform_file(data, SoundRequest(model=model.model_id, seed=1, variation_amount=0.0), path)
            near = prints.nearest(made.waves[1], trained.spec)
            own += near.copy and near.file == path.name
        print(f"plain reconstructions flagged as copies of their own file: {own}/{len(sample)}")


if __name__ == "__main__":
    main()
