"""Models trained before full band (24 kHz, 80 mel bands; checkpoints with `mel_spec`) still
list, load and generate at their own rate, with the features they were trained on."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from generation_helpers import copy_of_trained
from sda_web.audio.features import MelSpec
from sda_web.generation import synth
from sda_web.generation.controls import ensure_analysis
from sda_web.generation.loading import load_trained_model
from sda_web.library import list_models
from sda_web.model import ConvVAE, ModelShape
from sda_web.training.checkpoints import load_checkpoint, save_checkpoint
from sda_web.training.data import segment_frames

torch.set_num_threads(1)


def to_old_format(run_dir):
    """Rewrite a run's checkpoints as the 24 kHz mel pipeline saved them: `mel_spec` without a kind,
    an 80-band model, and no analysis yet (it is made again from the old features)."""
    legacy = {k: v for k, v in MelSpec().to_dict().items() if k != "kind"}
    for name in ("best.pt", "latest.pt"):
        path = run_dir / "checkpoints" / name
        payload = load_checkpoint(path)
        shape = ModelShape.from_dict({**payload["model_shape"], "n_mels": 80,
                                      "frames": segment_frames(MelSpec(), 1.0)})
        torch.manual_seed(3)
        model = ConvVAE(shape)
        payload.pop("feature_spec")
        payload.update(mel_spec=legacy, model_shape=shape.to_dict(), feature_stats={"mean": -6.0, "std": 3.0})
        if "model" in payload:
            payload["model"] = model.state_dict()
        else:
            payload["trainer"]["model"] = model.state_dict()
        save_checkpoint(path, payload)
    (run_dir / "analysis.json").unlink()
    features = json.loads((run_dir / "features.json").read_text())
    features["mel_spec"] = legacy
    features.pop("feature_spec")
    (run_dir / "features.json").write_text(json.dumps(features))


@pytest.fixture(scope="module")
def old_data(tmp_path_factory):
    data = copy_of_trained(tmp_path_factory, "old-models")
    to_old_format(list_models(data)[0].run_dir)
    return data


def test_an_old_model_lists_loads_and_generates_at_24_khz(old_data):
    info = list_models(old_data)[0]
    model = load_trained_model(info.run_dir)
    assert model.spec == MelSpec() and model.shape.n_mels == 80
    analysis = ensure_analysis(info.run_dir, model)
    assert analysis.file_count == 24
    wave = synth.generate(model, analysis, seed=2, duration_s=1.5)[0]
    assert len(wave) == 36000 and np.isfinite(wave).all() and np.abs(wave).max() > 0.01
    again = synth.generate(model, analysis, seed=2, duration_s=1.5)[0]
    assert np.array_equal(wave, again)


def test_sda_generate_still_works_on_an_old_model(old_data, tmp_path):
    env = {**os.environ, "SDA_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "sda_web.cli", "generate", "latest", "--data-dir", str(old_data),
                             "--duration", "1", "--seed", "4", "--out", str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=240)
    assert result.returncode == 0, result.stderr
    written = sorted(tmp_path.glob("*.wav"))
    assert len(written) == 1 and "Traceback" not in result.stderr
    info = sf.info(str(written[0]))
    assert (info.samplerate, info.frames) == (24000, 24000)
