"""Importing folders into datasets, on real files."""
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from sda_web.datasets import (
    DatasetError,
    DatasetManifest,
    delete_dataset,
    import_files,
    import_folder,
    list_datasets,
    load_dataset,
    sanitize_name,
)


def write_tone(path, seconds=0.5, rate=48000, freq=440.0, **kwargs):
    t = np.arange(int(seconds * rate)) / rate
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, 0.4 * np.sin(2 * np.pi * freq * t), rate, **kwargs)
    return path


@pytest.fixture
def sounds(tmp_path):
    folder = tmp_path / "My Sounds"
    write_tone(folder / "kick one.wav", freq=60)
    write_tone(folder / "sub" / "bell.flac", freq=900, format="FLAC")
    write_tone(folder / "sub" / "pad.ogg", seconds=1.0, freq=300, format="OGG")
    write_tone(folder / "click.wav", seconds=0.06)
    (folder / "broken.wav").write_bytes(b"garbage" * 100)
    sf.write(folder / "silent.wav", np.zeros(48000), 48000)
    (folder / "notes.txt").write_text("not audio, ignored")
    (folder / "._kick one.wav").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    return folder


def test_import_folder_copies_good_files_and_records_rejections(data_dir, sounds):
    calls = []
    manifest = import_folder(data_dir, sounds, progress=lambda done, total: calls.append((done, total)))
    assert manifest.name == "My-Sounds"
    assert calls == [(i, 6) for i in range(1, 7)]
    assert sorted(f.source_name for f in manifest.files) == ["click.wav", "kick one.wav", "sub/bell.flac", "sub/pad.ogg"]
    assert manifest.file_count == 4
    assert manifest.total_duration_s == pytest.approx(0.5 + 0.5 + 1.0 + 0.06, abs=0.01)
    reasons = {r.name: r.reason for r in manifest.rejected}
    assert set(reasons) == {"broken.wav", "silent.wav"}
    assert "not an audio file" in reasons["broken.wav"].lower() and "silent" in reasons["silent.wav"]
    for path in manifest.paths(data_dir):
        assert path.is_file() and path.parent == data_dir / "datasets" / "My-Sounds" / "audio"
    assert "kick-one.wav" in {f.name for f in manifest.files}
    assert (sounds / "kick one.wav").is_file()  # originals untouched


def test_manifest_round_trips_and_is_plain_json(data_dir, sounds):
    manifest = import_folder(data_dir, sounds, name="drums")
    raw = json.loads((data_dir / "datasets" / "drums" / "manifest.json").read_text())
    assert DatasetManifest.from_dict(raw) == manifest == load_dataset(data_dir, "drums")
    assert DatasetManifest.from_dict(manifest.to_dict()) == manifest


def test_reimport_adds_new_files_and_never_duplicates(data_dir, sounds):
    first = import_folder(data_dir, sounds, name="set")
    write_tone(sounds / "new.wav", freq=1500)
    second = import_folder(data_dir, sounds, name="set")
    assert second.file_count == first.file_count + 1
    assert second.created == first.created
    assert len(second.already_present) == first.file_count
    assert [r.name for r in second.rejected] == [r.name for r in first.rejected]  # bad files are reported again
    assert len(list(second.audio_dir(data_dir).iterdir())) == second.file_count


def test_same_name_different_content_gets_a_new_name(data_dir, tmp_path):
    a = write_tone(tmp_path / "a" / "hit.wav", freq=200)
    b = write_tone(tmp_path / "b" / "hit.wav", freq=400)
    c = write_tone(tmp_path / "c" / "HIT.wav", freq=800)
    import_files(data_dir, "hits", [("hit.wav", a)])
    manifest = import_files(data_dir, "hits", [("hit.wav", b), ("hit.wav", a), ("HIT.wav", c)])
    assert [f.name for f in manifest.files] == ["hit.wav", "hit-2.wav", "HIT-3.wav"]
    assert list(manifest.already_present) == ["hit.wav"] and manifest.rejected == ()
    stored = manifest.paths(data_dir)
    assert stored[0].read_bytes() == a.read_bytes() and stored[1].read_bytes() == b.read_bytes()


def test_names_are_sanitised():
    assert sanitize_name("  My Field Recordings  ") == "My-Field-Recordings"
    assert sanitize_name("../../etc/passwd") == "etcpasswd"
    assert sanitize_name("Café sons!") == "Cafe-sons"
    assert sanitize_name("drums_2024") == "drums_2024"
    assert len(sanitize_name("x" * 200)) == 64
    for bad in ["", "   ", "!!!", "..", None]:
        with pytest.raises(DatasetError, match="name"):
            sanitize_name(bad)


def test_clear_errors_for_bad_folders(data_dir, tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        import_folder(data_dir, tmp_path / "missing")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("hi")
    with pytest.raises(DatasetError, match="No audio files"):
        import_folder(data_dir, tmp_path / "docs")
    file = write_tone(tmp_path / "one.wav")
    with pytest.raises(DatasetError, match="not a folder"):
        import_folder(data_dir, file)


def test_a_folder_of_only_bad_files_makes_no_dataset(data_dir, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "x.wav").write_bytes(b"nope" * 10)
    with pytest.raises(DatasetError, match="None of the 1") as info:
        import_folder(data_dir, folder)
    assert [r.name for r in info.value.rejected] == ["x.wav"]
    assert list_datasets(data_dir) == []
    assert not (data_dir / "datasets" / "bad").exists()


def test_list_sorted_skips_broken_and_delete_removes(data_dir, sounds):
    import_folder(data_dir, sounds, name="zeta")
    import_folder(data_dir, sounds, name="Alpha")
    broken = data_dir / "datasets" / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    assert [m.name for m in list_datasets(data_dir)] == ["Alpha", "zeta"]
    with pytest.raises(DatasetError, match="damaged"):
        load_dataset(data_dir, "broken")
    with pytest.raises(DatasetError, match="damaged"):
        import_folder(data_dir, sounds, name="broken")  # never overwrites a manifest it cannot read
    delete_dataset(data_dir, "zeta")
    assert not (data_dir / "datasets" / "zeta").exists()
    assert [m.name for m in list_datasets(data_dir)] == ["Alpha"]
    with pytest.raises(DatasetError, match="no dataset named 'zeta'"):
        load_dataset(data_dir, "zeta")
    with pytest.raises(DatasetError, match="no dataset"):
        delete_dataset(data_dir, "zeta")


def test_server_side_modules_do_not_import_torch():
    code = "import sys, sda_web.datasets, sda_web.audio.io, sda_web.audio.demo; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_file_with_a_lying_extension_is_stored_under_its_real_format(data_dir, tmp_path):
    folder = tmp_path / "lying"
    folder.mkdir()
    t = np.arange(24000) / 24000
    sf.write(folder / "actually-flac.wav", (0.5 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 24000, format="FLAC")
    manifest = import_folder(data_dir, folder, name="lying")
    assert [f.name for f in manifest.files] == ["actually-flac.flac"] and manifest.files[0].format == "FLAC"
