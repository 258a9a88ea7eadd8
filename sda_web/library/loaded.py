"""The one model the library generates with, kept loaded (with its analysis and the training
files' fingerprints): the Generate tab makes sound after sound with the same model, and a
checkpoint load costs more than a short sound.

Imports torch only when a model is loaded.
"""
from __future__ import annotations

import threading

from ..checkpoints import get_best_checkpoint, get_latest_checkpoint
from ..generation.analysis import AnalysisError
from ..generation.novelty import ensure_fingerprints
from ..training.devices import torch_threads
from .errors import SoundError
from .models import ModelInfo


def use_app_threads() -> None:
    """The CPU thread count changes float rounding in convolutions and matmuls, so every
    generation (web or CLI) runs with the app's one policy (what training uses too)."""
    import torch

    if torch.get_num_threads() != torch_threads():
        torch.set_num_threads(torch_threads())


_cache_lock = threading.Lock()
_cached: dict = {}


def loaded_model(model: ModelInfo, device: str):
    """(TrainedModel, LatentAnalysis | None) of a library model, on the app's thread policy;
    loaded once and kept until another model (or newer weights) is asked for."""
    # torch only when a sound is made: the server and the Library's pages start without it
    from ..generation.controls import ensure_analysis
    from ..generation.loading import load_trained_model

    use_app_threads()
    checkpoint = (get_latest_checkpoint if model.weights == "last" else get_best_checkpoint)(model.run_dir)
    if checkpoint is None:
        raise SoundError(f"Model {model.name!r} has no checkpoint.")
    stat = checkpoint.stat()
    key = (str(model.run_dir), str(checkpoint), stat.st_mtime_ns, stat.st_size, str(device))
    with _cache_lock:
        hit = _cached.get(key)
        if hit is None:
            trained = load_trained_model(model.run_dir, model.weights, device)
            try:
                analysis = ensure_analysis(model.run_dir, trained, progress=None)
            except AnalysisError:  # not analysed, and its sound files are not here (an imported model)
                analysis = None
            _cached.clear()
            _cached[key] = hit = (trained, analysis)
    return hit


_fingerprint_cache: dict = {}  # (run folder, epoch) -> Fingerprints | None: one model's, like _cached


def nearest_training_files(model: ModelInfo, trained, analysis, waves: dict) -> dict:
    """Each wave's nearest training file (empty when the model's files are not here)."""
    # torch only when a sound is made: the server and the Library's pages start without it
    from ..generation.controls import run_files

    key = (str(model.run_dir), trained.epoch, trained.spec.sample_rate)
    with _cache_lock:
        if key not in _fingerprint_cache:
            _fingerprint_cache.clear()
            _fingerprint_cache[key] = ensure_fingerprints(model.run_dir, trained, run_files(model.run_dir), analysis)
        prints = _fingerprint_cache[key]
    if prints is None:
        return {}
    return {variation: prints.nearest(wave, trained.spec) for variation, wave in waves.items()}
