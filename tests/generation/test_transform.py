"""Starting from a sound (issue 10): transform and morph with a real tiny trained model,
on real files written by the test; the sounds kept in the library with what they came from."""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import soundfile as sf
import torch

from generation_helpers import copy_of_trained, log_spectral_distance
from sda_web.audio.io import AudioRejected
from sda_web.generation.settings import GenerationSettings
from sda_web.library import (
    SoundError, SoundRequest, delete_sound, export_sound, generate_sounds, keep_dataset_file, keep_source,
    list_models, list_sources, loaded_model, regenerate, render, sample_pack,
)
from sda_web.generation.export import AudioFormat

torch.set_num_threads(1)
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def data(trained_demo, tmp_path_factory):
    return copy_of_trained(trained_demo, tmp_path_factory, "transform")


@pytest.fixture(scope="module")
def loaded(data):
    return loaded_model(list_models(data)[0], "cpu")


def chord(path, seconds=1.7, rate=44_100, channels=2):
    """A sound that is not in the dataset: a decaying two-note chord, stereo, at 44.1 kHz."""
    t = np.arange(int(seconds * rate)) / rate
    left = 0.3 * np.exp(-2 * t) * (np.sin(2 * np.pi * 220 * t) + np.sin(2 * np.pi * 330 * t))
    right = 0.3 * np.exp(-3 * t) * np.sin(2 * np.pi * 440 * t)
    sf.write(path, np.stack([left, right], axis=1)[:, :channels].astype(np.float32), rate)
    return path


def test_plain_reconstruction_is_as_long_as_the_input_and_the_same_twice(data, loaded, tmp_path):
    from sda_web.generation.transform import load_source, transform_variation

    trained, analysis = loaded
    rate = trained.spec.sample_rate
    wave = load_source(chord(tmp_path / "chord.wav"), rate)
    assert len(wave) == round(1.7 * rate)
    plain = GenerationSettings(seed=1, variation_amount=0.0)
    first = transform_variation(trained, analysis, wave, plain, 0)
    assert first.dtype == np.float32 and len(first) == len(wave)
    assert np.array_equal(first, transform_variation(trained, analysis, wave, plain, 0))
    # Without controls and wander the seed cannot matter; it is the model's own version of the sound.
    assert np.array_equal(first, transform_variation(trained, analysis, wave, GenerationSettings(seed=99,
                                                                                             variation_amount=0.0), 0))
    rms = lambda w: float(np.sqrt(np.mean(w.astype(np.float64) ** 2)))  # noqa: E731
    assert 0.5 < rms(first) / rms(wave) < 2.0  # at the sound's own level (the level match)
    # It follows its source: closer to the chord than the model's version of a noise burst of the
    # same length and level is (a tiny model of the demo set blurs the notes; it must not ignore them).
    # By 0.5 dB: the tiny model's figures move by tenths of a dB between CPUs (it was 0.97 dB on one
    # 2-core machine, above 1 on another).
    t = np.arange(len(wave)) / rate
    burst = (np.random.default_rng(0).standard_normal(len(wave)) * np.exp(-3 * t)).astype(np.float32)
    burst *= rms(wave) / rms(burst)
    other = transform_variation(trained, analysis, burst, plain, 0)
    assert log_spectral_distance(wave, first) < log_spectral_distance(wave, other) - 0.5


def test_controls_and_variation_move_the_sound_deterministically(loaded, tmp_path):
    from sda_web.generation.transform import load_source, transform_variation

    trained, analysis = loaded
    wave = load_source(chord(tmp_path / "c.wav", seconds=2.5), trained.spec.sample_rate)
    plain = transform_variation(trained, analysis, wave, GenerationSettings(seed=1, variation_amount=0.0), 0)
    moved = GenerationSettings(seed=4, variation_amount=0.5, controls={"brightness": 2.0})
    a = transform_variation(trained, analysis, wave, moved, 0)
    assert len(a) == len(wave) and not np.array_equal(a, plain)
    assert np.array_equal(a, transform_variation(trained, analysis, wave, moved, 0))  # same request, same samples
    other_seed = transform_variation(trained, analysis, wave, GenerationSettings(seed=5, variation_amount=0.5,
                                                                                controls={"brightness": 2.0}), 0)
    assert not np.array_equal(a, other_seed)


def test_a_file_the_importer_refuses_is_refused_with_its_reason(data, tmp_path):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all" * 50)
    with pytest.raises(AudioRejected, match="Not an audio file"):
        keep_source(data, junk, "junk.wav")
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(24_000, np.float32), 24_000)
    with pytest.raises(AudioRejected, match="silent"):
        keep_source(data, silent, "silent.wav")
    long = tmp_path / "long.flac"
    sf.write(long, (0.1 * np.sin(np.arange(8000 * 61) / 3)).astype(np.float32), 8000)
    with pytest.raises(AudioRejected, match="at most 60 s"):
        keep_source(data, long, "long.flac")
    assert list_sources(data, None) == []  # nothing half-kept


def test_a_transform_is_kept_with_its_source_and_made_again_bit_for_bit(data, tmp_path):
    kept = keep_source(data, chord(tmp_path / "my chord.wav"), "my chord.wav")
    assert keep_source(data, tmp_path / "my chord.wav", "again.wav").source_id == kept.source_id  # same bytes
    request = SoundRequest(model="latest", seed=3, variations=2, variation_amount=0.3, controls={"brightness": 1},
                           source=kept.source_id)
    sounds = generate_sounds(data, request)
    assert [s.variation for s in sounds] == [1, 2]
    record = json.loads((sounds[0].sound_dir / "sound.json").read_text())
    assert record["params"]["source"] == kept.source_id
    assert record["sources"][kept.source_id] == {"name": "my chord.wav", "origin": "upload", "dataset": None}
    assert abs(record["duration_s"] - 1.7) < 1e-3
    stored, rate = sf.read(sounds[0].audio_path, dtype="float32")
    wave, again_rate = regenerate(data, sounds[0].sound_id)
    assert rate == again_rate and len(wave) == len(stored)
    assert np.array_equal(sf.read(io.BytesIO(export_sound(data, sounds[0].sound_id, AudioFormat("wav", 16))),
                                  dtype="float32")[0], stored)
    (tmp_path / "my chord.wav").unlink()  # the upload is gone: the library kept its own copy
    assert np.array_equal(regenerate(data, sounds[0].sound_id)[0], wave)

    delete_sound(data, sounds[0].sound_id)
    assert kept.audio_path.is_file()  # variation 2 still refers to it
    delete_sound(data, sounds[1].sound_id)
    assert not kept.folder.exists()  # gone with the last sound made from it
    with pytest.raises(SoundError, match="no longer kept"):
        render(data, request)


def test_a_dataset_file_and_an_upload_can_be_morphed(data, loaded, tmp_path):
    dataset_file = keep_dataset_file(data, "demo", "demo_02_bell.wav")
    assert dataset_file.origin == "dataset" and dataset_file.dataset == "demo"
    upload = keep_source(data, chord(tmp_path / "chord.wav", seconds=1.0, channels=1), "chord.wav")
    with pytest.raises(ValueError, match="not a sound of the dataset"):
        keep_dataset_file(data, "demo", "../../etc/passwd")

    morph = SoundRequest(model="latest", seed=8, duration_s=1.2, variation_amount=0.2,
                         blend=("demo_02_bell.wav", upload.source_id, 0.5))
    made = render(data, morph)
    assert len(made.waves[1]) == round(1.2 * made.sample_rate)
    assert np.array_equal(made.waves[1], render(data, morph).waves[1])
    ends = [render(data, SoundRequest(model="latest", seed=8, duration_s=1.2, variation_amount=0.2,
                                      blend=("demo_02_bell.wav", upload.source_id, t))).waves[1] for t in (0.0, 1.0)]
    assert not np.array_equal(ends[0], ends[1]) and not np.array_equal(ends[0], made.waves[1])
    # Both ends kept sounds: a dataset copy and an upload.
    both = SoundRequest(model="latest", seed=8, duration_s=0.8, blend=(dataset_file.source_id, upload.source_id, 0.3))
    (sound,) = generate_sounds(data, both)
    assert set(sound.sources) == {dataset_file.source_id, upload.source_id}
    from sda_web.web.sound_cards import describe

    assert "morph demo_02_bell.wav → chord.wav at 0.3" in describe(sound)
    with pytest.raises(ValueError, match="is not one of the sounds this model was trained on"):
        render(data, SoundRequest(model="latest", seed=1, blend=("nope.wav", upload.source_id, 0.5)))


def test_a_sample_pack_holds_every_variation_and_its_settings(data, tmp_path):
    kept = keep_source(data, chord(tmp_path / "kick me.wav", seconds=0.6), "kick me.wav")
    sounds = generate_sounds(data, SoundRequest(model="latest", seed=21, variations=3, variation_amount=0.4,
                                                source=kept.source_id, format="flac", bits=24))
    pack, name = sample_pack(data, sounds[0].batch)
    assert name.endswith("-kick-me-seed21-pack.zip")
    with zipfile.ZipFile(io.BytesIO(pack)) as archive:
        names = archive.namelist()
        settings = json.loads(archive.read("settings.json"))
        assert len(names) == 4 and all(n.endswith("-kick-me-seed21-v%d.flac" % (i + 1)) for i, n in enumerate(names[:3]))
        for sound, member in zip(sounds, names):
            assert archive.read(member) == sound.audio_path.read_bytes()
    assert settings["settings"]["seed"] == 21 and settings["settings"]["source"] == kept.source_id
    assert settings["settings"]["variation_amount"] == 0.4 and settings["model"]["epoch"] == sounds[0].model_epoch
    assert settings["sources"][kept.source_id]["name"] == "kick me.wav"
    assert [s["variation"] for s in settings["sounds"]] == [1, 2, 3]
    delete_sound(data, sounds[1].sound_id)
    with zipfile.ZipFile(io.BytesIO(sample_pack(data, sounds[0].batch)[0])) as archive:
        assert len(archive.namelist()) == 3
    with pytest.raises(ValueError, match="not the id"):
        sample_pack(data, "../../etc")


def test_a_refined_code_decodes_closer_to_its_sound_and_leaves_the_model_alone(loaded, tmp_path):
    """A gradient step on a sound's global latent (what a transform starts from) brings the model's
    version of it closer to the sound, on sounds it learnt and on one it did not."""
    from sda_web.audio.demo import write_demo_sounds
    from sda_web.audio.inverse import features_to_wave
    from sda_web.generation.refine import refine_code
    from sda_web.generation.transform import load_source

    trained, _ = loaded
    rate = trained.spec.sample_rate
    paths = write_demo_sounds(tmp_path / "demo", count=8) + [chord(tmp_path / "chord.wav")]
    before, after = [], []
    for path in paths:
        wave = load_source(path, rate)
        source = torch.from_numpy(wave)
        code = trained.encode(source)
        refined = refine_code(trained, source, code)
        assert refined.path.shape == code.path.shape and torch.equal(refined.detail, code.detail)
        for codes, distances in ((code, before), (refined, after)):
            feats = trained.decode(codes.path, len(wave), codes.detail)
            distances.append(log_spectral_distance(wave, features_to_wave(feats, trained.spec).numpy()[:len(wave)]))
    assert np.mean(after) < np.mean(before), (before, after)
    assert all(p.grad is None for p in trained.model.parameters())  # the shared model is not touched


def test_a_transform_asked_to_ring_longer_gets_room_after_its_source(loaded, tmp_path):
    """`sda transform --control decay=+2` of a file that ends where its sound does: the new sound
    is as long as the decay control promises (2x here), not cut where the file ended; shorter or
    untouched, it stays as long as the file."""
    from dataclasses import replace

    from sda_web.generation.analysis import Control
    from sda_web.generation.transform import load_source, transform_variation

    trained, analysis = loaded
    decay = Control(label="decay", feature="decay", component=-1, explained=0.0, correlation=1.0, std=1.0,
                    feature_per_std=0.5, direction=(0.0,) * analysis.latent_dim)  # +1 = 2 ** 0.5 x longer
    ringing = replace(analysis, controls=tuple(c for c in analysis.controls if c.label != "decay") + (decay,))
    wave = load_source(chord(tmp_path / "chord.wav", seconds=0.6), trained.spec.sample_rate)
    lengths = {value: len(transform_variation(trained, ringing, wave, GenerationSettings(
        seed=1, variation_amount=0.0, controls={"decay": value}).validated(ringing), 0)) for value in (-1.0, 0.0, 2.0)}
    assert lengths[-1.0] == lengths[0.0] == len(wave)
    assert lengths[2.0] == 2 * len(wave)
