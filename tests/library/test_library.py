"""The library on disk: models (list, rename, delete, export) and generated sounds
(kept with their parameters, listed, made again bit for bit, deleted)."""
import io
import json
import shutil
import zipfile

import numpy as np
import pytest
import soundfile as sf
import torch

from generation_helpers import TINY_MODEL, copy_of_trained
from sda_web.generation.export import AudioFormat, ExportError, encode_audio
from sda_web.library import (
    ModelBusy, ModelError, SoundError, SoundRequest, UnknownModel, UnknownSound, delete_model, delete_sound,
    export_model, export_sound, generate_sounds, list_models, list_sounds, load_sound, regenerate, rename_model,
    resolve_model,
)
from sda_web.training.runs import mark_live


@pytest.fixture(scope="module")
def data(trained_demo, tmp_path_factory):
    return copy_of_trained(trained_demo, tmp_path_factory, "library")


@pytest.fixture(scope="module")
def model_id(data):
    return list_models(data)[0].model_id


# -- models ---------------------------------------------------------------------

def test_a_trained_run_is_listed_as_a_model(data, model_id):
    (model,) = list_models(data)
    assert model.model_id == model_id and model.dataset == "demo" and model.status == "completed"
    assert model.epochs_trained == model.total_epochs == TINY_MODEL["epochs"] and model.best_val_loss > 0
    assert model.name.startswith("demo 20") and model.created
    assert "brightness" in model.controls and model.has_analysis and not model.is_training
    assert json.loads(json.dumps(model.to_dict()))["id"] == model_id
    assert resolve_model(data, "latest").model_id == model_id
    assert resolve_model(data, model_id).model_id == model_id
    assert resolve_model(data, model.name.upper()).model_id == model_id  # names match case-insensitively


def test_rename_is_kept_on_disk_and_validated(data, model_id):
    renamed = rename_model(data, model_id, "  Glass   drums ")
    assert renamed.name == "Glass drums"
    assert json.loads((renamed.run_dir / "model.json").read_text()) == {"name": "Glass drums"}
    assert list_models(data)[0].name == "Glass drums"
    assert resolve_model(data, "glass drums").model_id == model_id
    for bad, message in [("", "cannot be empty"), ("x" * 81, "at most 80 characters"), ("latest", "reserved"),
                         ("bell\x01", "control characters")]:
        with pytest.raises(ModelError, match=message):
            rename_model(data, model_id, bad)
    assert rename_model(data, model_id, "tab\there").name == "tab here"  # whitespace is folded, not refused
    with pytest.raises(UnknownModel, match="There is no model 'nope'"):
        rename_model(data, "nope", "x")
    with pytest.raises(UnknownModel, match="There is no model called 'nope'"):
        resolve_model(data, "nope")
    rename_model(data, model_id, "Glass drums")


def test_names_stay_unambiguous(data, model_id):
    twin_dir = data / "runs" / "demo-twin"
    shutil.copytree(data / "runs" / model_id, twin_dir)
    (twin_dir / "model.json").unlink()
    try:
        twin = resolve_model(data, "demo-twin")
        with pytest.raises(ModelError, match="Another model is already called 'Glass drums'"):
            rename_model(data, "demo-twin", "glass DRUMS")
        with pytest.raises(ModelError, match="is another model's id"):
            rename_model(data, "demo-twin", model_id)
        with pytest.raises(ModelError, match="Another model is already called"):
            rename_model(data, model_id, twin.name)  # default names count too
        (data / "runs" / model_id / "model.json").unlink()  # two runs made in the same minute share a default name
        with pytest.raises(UnknownModel, match="Several models are called .* use the run id or rename one"):
            resolve_model(data, twin.name)
    finally:
        shutil.rmtree(twin_dir)
        rename_model(data, model_id, "Glass drums")


def test_export_is_one_file_that_holds_a_usable_model(data, model_id, tmp_path):
    from sda_web.model import build_model

    path = export_model(data, model_id, tmp_path / "model.zip")
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        assert {"model.pt", "analysis.json", "config.json", "features.json", "run.json", "README.txt"} <= names
        payload = torch.load(io.BytesIO(archive.read("model.pt")), weights_only=False)
        analysis = json.loads(archive.read("analysis.json"))
    _, model = build_model(payload["model_shape"])
    model.load_state_dict(payload["model"])
    assert "trainer" not in payload and payload["feature_spec"]["sample_rate"] == 48000
    assert [c["label"] for c in analysis["controls"]] == list(list_models(data)[0].controls)
    default = export_model(data, model_id)
    assert default == data / "exports" / f"{model_id}.zip" and default.stat().st_size == path.stat().st_size


def test_delete_is_refused_while_training_and_removes_the_folder(trained_demo, tmp_path_factory):
    data = copy_of_trained(trained_demo, tmp_path_factory, "delete")
    model = list_models(data)[0]
    mark_live(model.model_id, True)  # what a runner does while it trains the run
    try:
        run_json = model.run_dir / "run.json"
        run_json.write_text(json.dumps({**json.loads(run_json.read_text()), "status": "running"}))
        with pytest.raises(ModelBusy, match="is training right now; cancel the run first"):
            delete_model(data, model.model_id)
    finally:
        mark_live(model.model_id, False)
    # run.json still says "running" but nothing trains it: an interrupted run can be deleted.
    assert list_models(data)[0].status == "interrupted"
    delete_model(data, model.model_id)
    assert not model.run_dir.exists() and list_models(data) == []
    with pytest.raises(UnknownModel):
        delete_model(data, model.model_id)


# -- sounds ---------------------------------------------------------------------

def test_generated_sounds_are_kept_with_their_parameters(data, model_id):
    request = SoundRequest(model="latest", seed=7, variations=2, duration_s=1.5,
                           controls={"brightness": 1.0, "loudness": -1.0}, variation_amount=0.8, format="wav", bits=24)
    progress = []
    sounds = generate_sounds(data, request, progress=lambda done, total: progress.append((done, total)))
    assert progress == [(1, 2), (2, 2)]
    assert [s.variation for s in sounds] == [1, 2] and len({s.batch for s in sounds}) == 1
    for sound in sounds:
        record = json.loads((sound.sound_dir / "sound.json").read_text())
        assert record["params"] == {"model": model_id, "seed": 7, "variations": 2, "duration_s": 1.5,
                                    "controls": {"brightness": 1.0, "loudness": -1.0}, "variation_amount": 0.8,
                                    "blend": None,
                                    "format": "wav", "bits": 24, "rate": None, "gl_iters": 24}
        assert record["variation"] == sound.variation and record["model_epoch"] > 0
        info = sf.info(str(sound.audio_path))
        assert (info.samplerate, info.subtype, info.frames) == (48000, "PCM_24", 72000)  # 24 kHz files: a 48 kHz model
        assert sound.waveform_path.read_text().startswith("<svg")
        assert load_sound(data, sound.sound_id) == sound


def test_same_parameters_give_the_same_samples_bit_for_bit(data):
    request = SoundRequest(model="latest", seed=3, variations=1, duration_s=1.0, format="flac", rate=48000)
    (first,) = generate_sounds(data, request)
    (second,) = generate_sounds(data, request)
    assert first.sound_id != second.sound_id
    a, _ = sf.read(str(first.audio_path), dtype="int32")
    b, _ = sf.read(str(second.audio_path), dtype="int32")
    assert np.array_equal(a, b)
    wave, rate = regenerate(data, first.sound_id)
    assert encode_audio(wave, rate, AudioFormat.parse("flac", 16, 48000)) == first.audio_path.read_bytes()


def test_list_newest_first_delete_and_export_in_another_format(data, model_id):
    older = generate_sounds(data, SoundRequest(model=model_id, seed=1, variations=2, duration_s=0.5))
    newer = generate_sounds(data, SoundRequest(model=model_id, seed=2, variations=1, duration_s=0.5))
    listed = [s.sound_id for s in list_sounds(data)]
    assert listed[:3] == [newer[0].sound_id, older[0].sound_id, older[1].sound_id]
    assert [s.sound_id for s in list_sounds(data, model_id=model_id)] == listed
    assert list_sounds(data, model_id="someone-else") == []

    flac = export_sound(data, older[0].sound_id, AudioFormat.parse("flac", 24, 44100))
    info = sf.info(io.BytesIO(flac))
    assert (info.format, info.subtype, info.samplerate) == ("FLAC", "PCM_24", 44100)
    assert export_sound(data, older[0].sound_id, AudioFormat()) == older[0].audio_path.read_bytes()

    delete_sound(data, older[0].sound_id)
    assert not older[0].sound_dir.exists()
    assert older[0].sound_id not in [s.sound_id for s in list_sounds(data)]
    with pytest.raises(UnknownSound, match="There is no sound"):
        load_sound(data, older[0].sound_id)
    with pytest.raises(UnknownSound, match="is not a sound id"):
        delete_sound(data, "../runs")


def test_a_sound_from_an_older_checkpoint_is_not_passed_off_as_the_same(data):
    (sound,) = generate_sounds(data, SoundRequest(model="latest", seed=4, duration_s=0.3))
    record_path = sound.sound_dir / "sound.json"
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps({**record, "model_epoch": record["model_epoch"] - 1}))
    with pytest.raises(SoundError, match="has been trained further since this sound was made"):
        regenerate(data, sound.sound_id)
    # Another format still works: converted from the stored file instead.
    assert sf.info(io.BytesIO(export_sound(data, sound.sound_id, AudioFormat.parse("wav", 24)))).subtype == "PCM_24"


@pytest.mark.parametrize("changes, error, message", [
    (dict(model="nope"), UnknownModel, "There is no model called 'nope'"),
    (dict(controls={"sparkle": 1}), ValueError, "no control called 'sparkle'"),
    (dict(controls={"brightness": 100}), ValueError, "must be between -3 and 3"),
    (dict(duration_s=-2), ValueError, "Duration must be between 0.1 and 60 seconds"),
    (dict(duration_s=3600), ValueError, "Duration must be between 0.1 and 60 seconds"),
    (dict(variations=9), ValueError, "from 1 to 8"),
    (dict(format="mp3"), ExportError, "Unknown audio format 'mp3'"),
    (dict(bits=32), ExportError, "Bit depth must be 16 or 24"),
    (dict(rate=96000), ExportError, "Sample rate must be"),
])
def test_bad_requests_are_refused_before_anything_is_written(data, changes, error, message):
    before = len(list_sounds(data))
    request = SoundRequest(**{**dict(model="latest", seed=1, duration_s=1.0), **changes})
    with pytest.raises(error, match=message):
        generate_sounds(data, request)
    assert len(list_sounds(data)) == before
