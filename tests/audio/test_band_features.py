"""Full band end to end: a dataset of mixed sample rates trains, the model works at the rate
most of its files use, and its previews and generated sounds keep content above 12 kHz."""
import numpy as np
import soundfile as sf
import torch
import pytest

from sda_web.datasets import import_folder
from sda_web.generation import synth
from sda_web.generation.analysis import load_analysis
from sda_web.generation.loading import load_trained_model
from sda_web.generation.after_training import analyse_trained_run
from sda_web.training import PreviewEvent, TrainingRunner, load_run
from training_helpers import finished, tiny_config

pytestmark = pytest.mark.trains  # every test here trains a real model

torch.set_num_threads(1)


def hat(rate: int, seconds: float, seed: int) -> np.ndarray:
    """A hi-hat-like burst: white noise high-passed at 8 kHz in the spectrum, decaying."""
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[np.fft.rfftfreq(n, 1 / rate) < 8000] = 0
    noise = np.fft.irfft(spectrum, n)
    wave = noise * np.exp(-np.arange(n) / rate * 6)
    return (0.5 * wave / np.abs(wave).max()).astype(np.float32)


def top_share(wave: np.ndarray, rate: int, above_hz: float = 12000.0) -> float:
    spectrum = np.abs(np.fft.rfft(wave)) ** 2
    return float(spectrum[np.fft.rfftfreq(len(wave), 1 / rate) >= above_hz].sum() / spectrum.sum())


def test_a_mixed_rate_dataset_trains_at_the_majority_rate_and_keeps_its_top_octave(data_dir, tmp_path, event_log):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i, rate in enumerate((44100, 44100, 48000, 22050, 44100)):
        sf.write(folder / f"hat_{i}_{rate}.wav", hat(rate, 1.0, i), rate)
    manifest = import_folder(data_dir, folder, name="mixed")
    assert manifest.file_count == 5 and {f.sample_rate for f in manifest.files} == {22050, 44100, 48000}

    runner = TrainingRunner(data_dir, after_training=analyse_trained_run)
    run_id = runner.start("mixed", tiny_config(epochs=40, preview_every=40), event_log)
    done = event_log.wait_for(finished)
    assert done.outcome == "completed", done.error

    run_dir = load_run(data_dir, run_id).run_dir
    model = load_trained_model(run_dir)
    assert model.spec.sample_rate == 44100 and model.spec.n_bands == 192  # 4 of 5 files are of the 44.1 kHz family
    preview = event_log.of(PreviewEvent)[-1]
    for path in (preview.audio_path, preview.prior_path):
        audio, rate = sf.read(path)
        assert rate == 44100 and np.isfinite(audio).all()
    recon, _ = sf.read(preview.audio_path)
    # A hat keeps its hiss: 70% of the source is above 12 kHz; a tiny model keeps some of it,
    # the old 24 kHz features kept none (< 0.1%).
    assert top_share(recon, 44100) > 0.05

    wave = synth.generate(model, load_analysis(run_dir), seed=1, duration_s=1.0)[0]
    assert len(wave) == 44100 and top_share(wave, 44100) > 0.05
