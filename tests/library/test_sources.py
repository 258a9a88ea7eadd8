"""Sounds to start from: what a form's "start from" names becomes one kept source."""
import numpy as np
import pytest
import soundfile as sf

from sda_web.datasets import import_folder
from sda_web.library.sources import SourceError, keep_source, load_source, source_for


@pytest.fixture()
def data(tmp_path):
    folder = tmp_path / "sounds"
    folder.mkdir()
    t = np.arange(22050) / 22050
    for k, freq in enumerate((220.0, 330.0)):
        sf.write(folder / f"tone{k}.wav", (0.3 * np.sin(2 * np.pi * freq * t) * np.exp(-4 * t)).astype(np.float32), 22050)
    data = tmp_path / "data"
    import_folder(data, folder, name="tones")
    return data, folder


def test_a_kept_source_id_is_used_as_it_is_and_the_model_is_not_looked_up(data):
    data_dir, folder = data
    kept = keep_source(data_dir, folder / "tone0.wav", "tone0.wav")

    def no_lookup():
        raise AssertionError("the model's dataset is only needed for a file name")

    assert source_for(data_dir, kept.source_id, no_lookup) == kept.source_id


def test_a_file_of_the_models_dataset_is_kept_once_and_a_stranger_is_refused(data):
    data_dir, _ = data
    first = source_for(data_dir, "tone1.wav", lambda: "tones")
    assert source_for(data_dir, "tone1.wav", lambda: "tones") == first  # the same bytes are kept once
    kept = load_source(data_dir, first)
    assert kept.origin == "dataset" and kept.dataset == "tones" and kept.name == "tone1.wav"
    with pytest.raises(SourceError, match="not a sound of the dataset 'tones'"):
        source_for(data_dir, "../../etc/passwd", lambda: "tones")
    with pytest.raises(SourceError, match="is gone"):
        source_for(data_dir, "tone1.wav", lambda: "deleted-dataset")
