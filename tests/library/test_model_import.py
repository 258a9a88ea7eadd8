"""Models that travel (issue 10): export a trained model, import it into another data
directory, and it makes the same samples; damaged, foreign and hostile zips are refused
and leave the library exactly as it was."""
from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile

import numpy as np
import pytest
import torch

from generation_helpers import copy_of_trained
from sda_web.library import (
    ImportRefused, SoundRequest, export_model, import_model, list_models, regenerate, generate_sounds, render,
    rename_model,
)

torch.set_num_threads(1)
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def trained(trained_demo, tmp_path_factory):
    return copy_of_trained(trained_demo, tmp_path_factory, "travel")


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    return export_model(trained, list_models(trained)[0].model_id, tmp_path_factory.mktemp("zips") / "model.zip")


def snapshot(folder) -> dict:
    """Every file under `folder` (names and content hashes): 'the library exactly as it was'."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            out[os.path.relpath(os.path.join(root, name), folder) + "/"] = None
        for name in files:
            path = os.path.join(root, name)
            out[os.path.relpath(path, folder)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return out


def test_an_imported_model_makes_the_same_samples(trained, exported, tmp_path):
    original = list_models(trained)[0]
    request = SoundRequest(model=original.model_id, seed=17, variations=2, duration_s=1.5,
                           controls={"brightness": 1.0}, variation_amount=0.7)
    there = render(trained, request)

    other = tmp_path / "elsewhere"
    imported = import_model(other, exported)
    assert imported.model_id == original.model_id and imported.name == original.name
    assert imported.controls == original.controls and imported.epochs_trained == original.epochs_trained
    assert list_models(other) == [imported]
    record = json.loads((imported.run_dir / "run.json").read_text())
    assert "pid" not in record and record["imported_from"] == "model.zip"
    here = render(other, SoundRequest(**{**request.__dict__, "model": "latest"}))
    for variation in (1, 2):  # same request, same machine: the same samples, bit for bit
        assert np.array_equal(there.waves[variation], here.waves[variation])
    (sound,) = generate_sounds(other, SoundRequest(model="latest", seed=3, duration_s=0.5))
    assert np.array_equal(regenerate(other, sound.sound_id)[0], render(other, sound.request).waves[1])

    before = snapshot(other)
    with pytest.raises(ImportRefused, match="already in the library"):
        import_model(other, exported)
    assert snapshot(other) == before


def test_an_id_or_name_that_is_taken_gets_a_new_one(trained, exported, tmp_path):
    other = tmp_path / "d"
    first = import_model(other, exported)
    rename_model(other, first.model_id, "Glass")
    # The same run id with other weights (a model retrained elsewhere) is not a duplicate.
    changed = tmp_path / "changed.zip"
    with zipfile.ZipFile(exported) as src, zipfile.ZipFile(changed, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "model.pt":
                payload = torch.load(io.BytesIO(data), weights_only=True)
                key = next(iter(payload["model"]))
                payload["model"][key] = payload["model"][key] + 0.01
                buffer = io.BytesIO()
                torch.save(payload, buffer)
                data = buffer.getvalue()
            if info.filename != "model.json":
                dst.writestr(info.filename, data)
        dst.writestr("model.json", json.dumps({"name": "Glass"}))  # it was called Glass where it was made too
    second = import_model(other, changed)
    assert second.model_id == first.model_id + "-imported" and second.name == "Glass (imported)"
    assert {m.model_id for m in list_models(other)} == {first.model_id, second.model_id}


def _rewrite(exported, dest, *, drop=(), add=(), change=None):
    with zipfile.ZipFile(exported) as src, zipfile.ZipFile(dest, "w") as dst:
        for info in src.infolist():
            if info.filename in drop:
                continue
            data = src.read(info)
            dst.writestr(info.filename, change(info.filename, data) if change else data)
        for name, data in add:
            dst.writestr(name, data)
    return dest


def bad_zips(exported, tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    raw = exported.read_bytes()
    cut = tmp_path / "cut.zip"
    cut.write_bytes(raw[: len(raw) // 2])
    junk = tmp_path / "junk.zip"
    junk.write_bytes(os.urandom(4096))
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(foreign, "w") as z:
        z.writestr("photos/cat.jpg", b"\xff\xd8\xff" + b"0" * 100)
        z.writestr("notes.txt", "hello")
    escape = _rewrite(exported, tmp_path / "escape.zip", add=[("../../outside.txt", b"gotcha")])
    escape_only = tmp_path / "escape-only.zip"
    with zipfile.ZipFile(escape_only, "w") as z:
        z.writestr("../model.pt", b"x")
    absolute = _rewrite(exported, tmp_path / "absolute.zip", add=[("/tmp/evil.json", b"{}")])
    no_weights = _rewrite(exported, tmp_path / "no-weights.zip", drop=("model.pt",))
    bad_weights = _rewrite(exported, tmp_path / "bad-weights.zip",
                           change=lambda n, d: d[: len(d) // 3] if n == "model.pt" else d)
    bad_json = _rewrite(exported, tmp_path / "bad-json.zip",
                        change=lambda n, d: b"{not json" if n == "run.json" else d)
    other_analysis = _rewrite(exported, tmp_path / "other-analysis.zip", change=lambda n, d: json.dumps(
        {**json.loads(d), "latent_dim": 3}).encode() if n == "analysis.json" else d)
    flipped = bytearray(raw)  # one byte of the stored weights changed: the CRC catches it
    with zipfile.ZipFile(exported) as z:
        info = z.getinfo("model.pt")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + info.compress_size // 2
    flipped[start] ^= 0xFF
    crc = tmp_path / "crc.zip"
    crc.write_bytes(bytes(flipped))
    pickle_bomb = tmp_path / "pickle.zip"  # a model.pt whose unpickling would run code
    with zipfile.ZipFile(pickle_bomb, "w") as z:
        class Boom:
            def __reduce__(self):
                return (os.system, ("touch /tmp/sda-import-ran-code",))
        buffer = io.BytesIO()
        torch.save({"format_version": 1, "model": Boom()}, buffer)
        z.writestr("model.pt", buffer.getvalue())
        z.writestr("run.json", "{}")
    return {
        cut: "damaged or incomplete", junk: "not a zip file", foreign: "not an sda-web model export",
        escape: "leads outside its folder", escape_only: "leads outside its folder",
        absolute: "leads outside its folder", no_weights: "has no model.pt",
        bad_weights: "model.pt in that zip is damaged", bad_json: "run.json in that zip is damaged",
        other_analysis: "belong to other weights", crc: "damaged or incomplete",
        pickle_bomb: "model.pt in that zip is damaged",
    }


def test_bad_zips_are_refused_with_one_sentence_and_nothing_changes(trained, exported, tmp_path):
    other = tmp_path / "library"
    import_model(other, exported)
    rename_model(other, list_models(other)[0].model_id, "Kept as it was")
    before = snapshot(other)
    cases = bad_zips(exported, tmp_path / "zips")
    for path, message in cases.items():
        with pytest.raises(ImportRefused, match=message) as refused:
            import_model(other, path)
        text = str(refused.value)
        assert text.count(". ") == 0 and text.endswith("."), text  # one sentence
        assert snapshot(other) == before, path.name
    assert not (tmp_path / "outside.txt").exists() and not (other.parent / "outside.txt").exists()
    assert not os.path.exists("/tmp/sda-import-ran-code")


def test_an_imported_model_is_not_offered_for_more_training(trained, exported, tmp_path, capsys):
    from starlette.testclient import TestClient

    from sda_web.datasets import import_folder
    from sda_web.web.app import create_app
    from sda_web.web.view import resume_offer
    from conftest_web import write_tones

    other = tmp_path / "with-demo"
    imported = import_model(other, exported)
    write_tones(tmp_path / "demo")
    import_folder(other, tmp_path / "demo", name=imported.dataset)  # a dataset of the same name lives here
    assert resume_offer(other, imported.dataset) is None  # its weights are here, its optimizer state is not
    with TestClient(create_app(other)) as client:
        r = client.post("/train/resume", data={"run_id": imported.model_id})
        assert r.status_code == 409 and "was imported" in r.text
    from sda_web.cli import main

    assert main(["train", str(tmp_path / "not-a-folder"), "--name", imported.dataset, "--resume",
                 "--data-dir", str(other)]) == 2
    assert "has no run with a checkpoint to resume" in capsys.readouterr().err
