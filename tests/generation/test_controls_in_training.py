"""Controls built into the model: on a set whose sounds differ in brightness and in how long they
ring, training keeps latent dimensions in the order of those (the attribute term) and the model's
brightness and decay sliders move the made sound's brightness and decay the right way."""
import numpy as np
import pytest
import soundfile as sf
import torch

from generation_helpers import spectral_centroid
from sda_web.audio.descriptors import segment_features
from sda_web.audio.features import log_features
from sda_web.datasets import import_folder
from sda_web.generation import synth
from sda_web.generation.after_training import analyse_trained_run
from sda_web.generation.analysis import load_analysis
from sda_web.generation.loading import load_trained_model
from sda_web.training import TrainingRunner, get_adaptive_config

pytestmark = pytest.mark.trains
RATE = 22050


def write_tones(folder):
    """16 plucked tones at one pitch: four brightnesses (how fast the harmonics fall) x four decays."""
    folder.mkdir()
    t = np.arange(int(1.2 * RATE)) / RATE
    for b, rolloff in enumerate((3.0, 1.8, 1.0, 0.5)):
        for d, tau in enumerate((0.04, 0.1, 0.25, 0.6)):
            wave = sum(np.sin(2 * np.pi * 220 * h * t) / h ** rolloff for h in range(1, 30) if 220 * h < RATE / 2)
            wave = 0.3 * wave / np.abs(wave).max() * np.exp(-t / tau)
            sf.write(folder / f"tone_b{b}_d{d}.wav", wave.astype(np.float32), RATE)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("controls")
    write_tones(root / "tones")
    data = root / "data"
    manifest = import_folder(data, root / "tones", name="tones")
    config = get_adaptive_config(manifest.file_count).with_overrides(
        epochs=80, width=32, latent_dim=8, batch_size=4, learning_rate=3e-3, augment=False, preview_every=1000,
        checkpoint_every=1000, patience=0)
    assert config.attribute_weight > 0  # on by default
    done = []
    runner = TrainingRunner(data, after_training=analyse_trained_run)
    runner.start("tones", config, done.append)
    assert runner.wait(timeout=600) and done[-1].outcome == "completed", done[-1].error
    run_dir = next((data / "runs").iterdir())
    return load_trained_model(run_dir), load_analysis(run_dir)


def made(model, analysis, **controls):
    return synth.generate(model, analysis, seed=3, variations=4, duration_s=1.2, controls=controls,
                          variation_amount=0.3)


def test_the_model_gets_brightness_and_decay_sliders_that_do_what_they_say(trained):
    model, analysis = trained
    assert model.shape.attribute_dims[:3] == ("brightness", "loudness", "decay")
    assert {"brightness", "decay"} <= set(analysis.labels), analysis.labels

    def centroid(value):
        return np.mean([spectral_centroid(w, RATE) for w in made(model, analysis, brightness=value)])

    def decay(value):
        feats = torch.stack([log_features(torch.from_numpy(w), model.spec) for w in made(model, analysis, decay=value)])
        return float(segment_features(feats, model.spec)["decay"].mean())

    assert centroid(-1.5) < centroid(0.0) < centroid(1.5)
    assert decay(-1.5) < decay(1.5), (decay(-1.5), decay(1.5))
    assert analysis.control("decay").effect.endswith("x longer")


def test_the_sliders_move_a_transformed_sound_the_same_way(trained, tmp_path):
    """`sda transform --control decay=...` / `brightness=...` on a tone like the set's: darker or
    brighter, shorter or longer, as the sliders say (the decay with room after the file to ring)."""
    from sda_web.generation.settings import GenerationSettings
    from sda_web.generation.transform import load_source, transform_variation

    model, analysis = trained
    t = np.arange(int(0.8 * RATE)) / RATE
    tone = sum(np.sin(2 * np.pi * 220 * h * t) / h ** 1.4 for h in range(1, 30) if 220 * h < RATE / 2)
    sf.write(tmp_path / "tone.wav", (0.3 * tone / np.abs(tone).max() * np.exp(-t / 0.15)).astype(np.float32), RATE)
    source = load_source(tmp_path / "tone.wav", model.spec.sample_rate)

    def transformed(**controls):
        settings = GenerationSettings(seed=1, variation_amount=0.0, controls=controls).validated(analysis)
        return transform_variation(model, analysis, source, settings, 0)

    def decay(wave):
        return float(segment_features(log_features(torch.from_numpy(wave), model.spec)[None], model.spec)["decay"][0])

    centroids = [spectral_centroid(transformed(brightness=v), model.spec.sample_rate) for v in (-1.5, 0.0, 1.5)]
    assert centroids[0] < centroids[1] < centroids[2], centroids
    shorter, longer = transformed(decay=-1.5), transformed(decay=1.5)
    assert len(shorter) == len(source) < len(longer)
    assert decay(shorter) < decay(longer) and decay(transformed()) < decay(longer), (decay(shorter), decay(longer))
