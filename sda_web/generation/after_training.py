"""What a run gets once it has trained: its sound controls and the new-or-copy reference.

The training runner calls `analyse_trained_run` as its `after_training` hook:
training never imports generation; whoever starts runs (the web app's queue,
`sda train`, a test) hands it over. This module imports no torch itself, so
the web server can hand the hook over without loading torch; the training
process calls `warm_up` while it waits for its run.
"""
from __future__ import annotations

from pathlib import Path

from .novelty import ensure_fingerprints


def warm_up() -> None:
    """Import what the analysis needs (torch and the models), ahead of the run."""
    from . import controls, loading, novelty  # noqa: F401


def analyse_trained_run(run_dir: Path, device) -> None:
    """Analyse the latent space of a run's best model (the sound controls) and fingerprint its
    training files (how close a new sound is to a copy)."""
    from .controls import analyse_run, run_files  # torch: see the module's docstring
    from .loading import load_trained_model

    model = load_trained_model(run_dir, "best", device)
    analysis = analyse_run(run_dir, model=model)
    ensure_fingerprints(run_dir, model, run_files(run_dir), analysis)
