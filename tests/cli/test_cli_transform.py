"""`sda transform`, `sda export-model` and `sda import-model` as a user runs them (a real
subprocess for the happy path; the rest through main(), which the console script calls)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from cli_helpers import sda
from generation_helpers import copy_of_trained
from sda_web.cli import main
from sda_web.library import list_models, list_sounds

torch.set_num_threads(1)
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def data(trained_demo, tmp_path_factory):
    return copy_of_trained(trained_demo, tmp_path_factory, "cli-transform")


def inputs(folder):
    folder.mkdir(parents=True, exist_ok=True)
    rate = 48_000
    t = np.arange(int(1.3 * rate)) / rate
    sf.write(folder / "bell.wav", (0.4 * np.exp(-3 * t) * np.sin(2 * np.pi * 660 * t)).astype(np.float32), rate)
    t = np.arange(int(0.45 * 22_050)) / 22_050
    noise = np.random.default_rng(0).standard_normal(t.size) * np.exp(-12 * t) * 0.3
    sf.write(folder / "snare.flac", noise.astype(np.float32), 22_050)
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    return folder


def test_plain_reconstruction_named_after_the_input_as_long_as_it(data, tmp_path):
    src = inputs(tmp_path / "in")
    out = tmp_path / "out"
    args = ["transform", "latest", str(src / "bell.wav"), str(src / "broken.wav"), str(src / "snare.flac"),
            "--variation", "0", "--seed", "5", "--out", str(out), "--data-dir", str(data)]
    run = sda(*args)
    assert run.returncode == 1, run.stderr  # one file skipped, the others written
    written = run.stdout.split()
    assert written == [str(out / "bell.wav"), str(out / "snare.wav")]
    assert f"skipped {src / 'broken.wav'}: " in run.stderr and "Traceback" not in run.stderr
    assert "1 of 3 files skipped." in run.stderr and "seed 5" in run.stderr
    hop_s = 512 / 48_000  # the demo model works at 48 kHz
    for name, seconds in (("bell.wav", 1.3), ("snare.wav", 0.45)):
        info = sf.info(str(out / name))
        assert info.samplerate == 48_000 and abs(info.frames / info.samplerate - seconds) <= hop_s
    assert list_sounds(data) == []  # --out writes files only
    first = sf.read(str(out / "bell.wav"), dtype="int16")[0]
    # In-process this time, another seed: with variation 0 and no control the seed does not matter.
    assert main([*args[:7], "--seed", "6", *args[9:]]) == 1
    assert np.array_equal(sf.read(str(out / "bell.wav"), dtype="int16")[0], first)


def test_same_seed_same_samples_and_the_library_keeps_them(data, tmp_path, capsys):
    src = inputs(tmp_path / "in")
    common = ["transform", "latest", str(src / "bell.wav"), "--control", "brightness=+1", "--variation", "0.5",
              "--seed", "12", "--format", "flac", "--rate", "44100", "--data-dir", str(data)]
    assert main([*common, "--out", str(tmp_path / "a")]) == 0
    assert main([*common, "--out", str(tmp_path / "b")]) == 0
    a, b = (sf.read(str(tmp_path / d / "bell.flac"), dtype="int16") for d in ("a", "b"))
    assert a[1] == 44_100 and np.array_equal(a[0], b[0])
    capsys.readouterr()
    assert main(common) == 0  # no --out: kept in the library with the sound it came from
    (path,) = capsys.readouterr().out.split()
    with open(os.path.join(os.path.dirname(path), "sound.json")) as f:
        record = json.load(f)
    source = record["params"]["source"]
    assert record["sources"][source]["name"] == "bell.wav" and record["params"]["seed"] == 12
    assert np.array_equal(sf.read(path, dtype="int16")[0], a[0])  # the same samples as the --out file
    # An input in the output folder is never overwritten.
    assert main([*common[:2], str(tmp_path / "a" / "bell.flac"), *common[3:], "--out", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "bell-transformed.flac").is_file()
    assert np.array_equal(sf.read(str(tmp_path / "a" / "bell.flac"), dtype="int16")[0], a[0])


@pytest.mark.parametrize("args, message", [
    (["nope", "x.wav"], "error: There is no model called 'nope'"),
    (["latest", "x.wav", "--control", "sparkle=1"], "error: This model has no control called 'sparkle'"),
    (["latest", "x.wav", "--variation", "3"], "error: Variation amount must be between 0 and 2"),
    (["latest", "x.wav", "--format", "mp3"], "error: Unknown audio format 'mp3'"),
])
def test_bad_arguments_give_one_clear_line(data, capsys, args, message):
    assert main(["transform", *args, "--data-dir", str(data)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and "Traceback" not in err


def test_export_and_import_through_the_command_line(data, tmp_path, capsys):
    zip_path = tmp_path / "m.zip"
    assert main(["export-model", "latest", str(zip_path), "--data-dir", str(data)]) == 0
    assert capsys.readouterr().out.strip() == str(zip_path)
    other = tmp_path / "other"
    assert main(["import-model", str(zip_path), "--data-dir", str(other)]) == 0
    out = capsys.readouterr().out
    original = list_models(data)[0]
    assert out.startswith(f"Imported model {original.name!r} (id {original.model_id})") and "brightness" in out
    assert main(["import-model", str(zip_path), "--data-dir", str(other)]) == 2
    assert capsys.readouterr().err.startswith("error: This model is already in the library")
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    assert main(["import-model", str(junk), "--data-dir", str(other)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: That file is not an sda-web model export") and err.count("\n") == 1
    assert main(["export-model", "nope", str(zip_path), "--data-dir", str(data)]) == 2
    assert "There is no model called 'nope'" in capsys.readouterr().err
    assert main(["export-model", "latest", str(tmp_path), "--data-dir", str(data)]) == 0  # a folder: named file in it
    assert capsys.readouterr().out.strip().endswith(".sda-model.zip")


def test_generate_blends_between_a_dataset_sound_and_any_file(data, tmp_path, capsys):
    src = inputs(tmp_path / "in")
    args = ["generate", "latest", "--blend", "demo_02_bell.wav", str(src / "snare.flac"), "0.5", "--duration", "1",
            "--seed", "4", "--data-dir", str(data)]
    assert main(args) == 0
    (path,) = capsys.readouterr().out.split()
    with open(os.path.join(os.path.dirname(path), "sound.json")) as f:
        record = json.load(f)
    a, b, amount = record["params"]["blend"]
    assert a == "demo_02_bell.wav" and b.startswith("src-") and amount == 0.5
    assert record["sources"][b]["name"] == "snare.flac"
    assert main([*args[:3], "demo_02_bell.wav", str(src / "broken.wav"), *args[5:]]) == 2
    assert capsys.readouterr().err.startswith(f"error: {src / 'broken.wav'}: ")
