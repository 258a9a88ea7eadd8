"""`sda generate` and `sda models` as a user runs them (real subprocesses for the happy
path; errors through main() in-process, which is what the console script calls)."""
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cli_helpers import sda
from generation_helpers import TINY_MODEL, copy_of_trained
from sda_web.cli import main


@pytest.fixture(scope="module")
def data(trained_demo, tmp_path_factory):
    return copy_of_trained(trained_demo, tmp_path_factory, "cli")


def test_models_lists_them_as_a_table_and_as_json(data):
    out = sda("models", "--json", "--data-dir", str(data))
    assert out.returncode == 0, out.stderr
    (model,) = json.loads(out.stdout)
    assert model["dataset"] == "demo" and model["status"] == "completed" and model["epochs_trained"] == TINY_MODEL["epochs"]
    assert "brightness" in model["controls"]
    table = sda("models", "--data-dir", str(data))
    assert table.returncode == 0 and model["id"] in table.stdout and f"{TINY_MODEL['epochs']}/{TINY_MODEL['epochs']}" in table.stdout
    assert table.stdout.splitlines()[0].split()[:3] == ["NAME", "ID", "DATASET"]


def test_generate_writes_the_files_and_prints_their_paths(data, tmp_path):
    args = ["generate", "latest", "--duration", "2", "--seed", "7", "-n", "2", "--control", "brightness=+1.5",
            "--variation", "0.8", "--format", "flac", "--bits", "24", "--rate", "48000", "--out", str(tmp_path / "out"),
            "--data-dir", str(data)]
    out = sda(*args)
    assert out.returncode == 0, out.stderr
    paths = out.stdout.split()
    assert len(paths) == 2 and all(p.endswith(".flac") for p in paths)
    assert "seed 7" in out.stderr
    first = {p: sf.read(p, dtype="int32")[0] for p in paths}
    for path in paths:
        info = sf.info(path)
        assert (info.samplerate, info.subtype, info.frames) == (48000, "PCM_24", 96000)
    assert not (data / "sounds").exists()  # --out writes files only, not to the library
    # In-process this time: same parameters, the same samples.
    assert main(args) == 0
    for path, samples in first.items():
        assert np.array_equal(sf.read(path, dtype="int32")[0], samples)


def test_generate_defaults_the_length_to_the_models_sounds_and_says_so(data, tmp_path, capsys):
    from sda_web.library import list_models

    model = list_models(data)[0]
    assert model.typical_seconds and model.default_duration_s == round(model.typical_seconds, 1)
    assert main(["generate", "latest", "--seed", "3", "--out", str(tmp_path), "--data-dir", str(data)]) == 0
    said = capsys.readouterr().err
    assert f"1 x {model.default_duration_s:g} s (the typical length of its sounds; --duration sets another)" in said
    (path,) = tmp_path.glob("*.wav")
    info = sf.info(str(path))
    assert info.frames == round(model.default_duration_s * info.samplerate)


def test_generate_without_out_keeps_the_sounds_in_the_library(data, capsys):
    assert main(["generate", "latest", "--duration", "0.5", "--seed", "1", "--data-dir", str(data)]) == 0
    (path,) = capsys.readouterr().out.split()
    assert path.startswith(str(data / "sounds")) and path.endswith("sound.wav")
    record = json.loads((Path(path).parent / "sound.json").read_text())
    assert record["params"]["seed"] == 1 and record["params"]["duration_s"] == 0.5


@pytest.mark.parametrize("args, message", [
    (["nope"], "error: There is no model called 'nope'"),
    (["latest", "--control", "sparkle=1"], "error: This model has no control called 'sparkle'"),
    (["latest", "--control", "brightness"], "error: --control needs LABEL=VALUE"),
    (["latest", "--control", "brightness=lots"], "error: --control brightness must be a number"),
    (["latest", "--duration", "-3"], "error: Duration must be between 0.1 and 60 seconds"),
    (["latest", "-n", "20"], "error: Number of variations must be a whole number from 1 to 8"),
    (["latest", "--bits", "8"], "error: Bit depth must be 16 or 24"),
    (["latest", "--rate", "22050"], "error: Sample rate must be"),
    (["latest", "--blend", "a.wav", "b.wav", "0.5"], "error: 'a.wav' is not one of the sounds"),
])
def test_bad_arguments_give_one_clear_line(data, capsys, args, message):
    assert main(["generate", *args, "--seed", "1", "--data-dir", str(data)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and "Traceback" not in err


def test_no_models_yet(tmp_path, capsys):
    assert main(["models", "--data-dir", str(tmp_path)]) == 0
    assert "No trained models yet" in capsys.readouterr().out
    assert main(["generate", "latest", "--data-dir", str(tmp_path)]) == 2
    assert "There are no trained models yet" in capsys.readouterr().err
