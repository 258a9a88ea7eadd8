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
from sda_web.audio.features import MelSpec, spec_from_dict
from sda_web.generation import synth
from sda_web.generation.controls import ensure_analysis
from sda_web.generation.loading import load_trained_model
from sda_web.library import list_models
from sda_web.model import ConvVAE, ModelShape
from sda_web.checkpoints import load_checkpoint, save_checkpoint
from sda_web.generation.segments import segment_frames

torch.set_num_threads(1)


def to_segment_model(run_dir, mel: bool):
    """Rewrite a run's checkpoints as earlier releases saved them: the segment model (`ConvVAE`,
    one latent per 1-s segment) on full-band bands, or (mel) on the 24 kHz pipeline's `mel_spec`
    without a kind and 80 bands; and no analysis yet (it is made again from the old features)."""
    legacy = {k: v for k, v in MelSpec().to_dict().items() if k != "kind"}
    for name in ("best.pt", "latest.pt"):
        path = run_dir / "checkpoints" / name
        payload = load_checkpoint(path)
        bands = 80 if mel else payload["model_shape"]["n_bands"]
        spec = MelSpec() if mel else spec_from_dict(payload["feature_spec"])
        shape = ModelShape(n_bands=bands, frames=segment_frames(spec, 1.0), latent_dim=payload["model_shape"]["latent_dim"],
                           width=32, dropout=0.0)
        torch.manual_seed(3)
        model = ConvVAE(shape)
        payload.pop("typical_seconds")
        payload["model_shape"] = shape.to_dict()
        if mel:
            payload.pop("feature_spec")
            payload.update(mel_spec=legacy, feature_stats={"mean": -6.0, "std": 3.0})
        if "model" in payload:
            payload["model"] = model.state_dict()
        else:
            payload["trainer"]["model"] = model.state_dict()
        save_checkpoint(path, payload)
    (run_dir / "analysis.json").unlink()
    record = json.loads((run_dir / "run.json").read_text())
    record.pop("typical_seconds")
    (run_dir / "run.json").write_text(json.dumps(record))
    config = json.loads((run_dir / "config.json").read_text())  # those releases had no local latent
    for key in ("local_dim", "prior_weight"):
        config.pop(key)
    (run_dir / "config.json").write_text(json.dumps(config))
    if mel:
        features = json.loads((run_dir / "features.json").read_text())
        features["mel_spec"] = legacy
        features.pop("feature_spec")
        (run_dir / "features.json").write_text(json.dumps(features))


def to_old_format(run_dir):
    to_segment_model(run_dir, mel=True)


@pytest.fixture(scope="module")
def old_data(trained_demo, tmp_path_factory):
    data = copy_of_trained(trained_demo, tmp_path_factory, "old-models")
    to_old_format(list_models(data)[0].run_dir)
    return data


def test_an_old_model_lists_loads_and_generates_at_24_khz(old_data):
    info = list_models(old_data)[0]
    model = load_trained_model(info.run_dir)
    assert model.spec == MelSpec() and model.shape.n_bands == 80
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


@pytest.fixture(scope="module")
def segment_data(trained_demo, tmp_path_factory):
    data = copy_of_trained(trained_demo, tmp_path_factory, "segment-models")
    to_segment_model(list_models(data)[0].run_dir, mel=False)
    return data


def test_a_full_band_segment_model_generates_transforms_and_refuses_more_training(segment_data):
    """The previous release's models (full band, one latent per segment) keep working, at 2 s by default."""
    from sda_web.generation.transform import transform_variation
    from sda_web.generation.settings import GenerationSettings
    from sda_web.generation.after_training import analyse_trained_run
    from sda_web.training import TrainingRunner
    from sda_web.training.runs import RunError

    info = list_models(segment_data)[0]
    assert info.typical_seconds is None and info.default_duration_s == 2.0
    model = load_trained_model(info.run_dir)
    assert not model.whole_sounds and model.default_seconds() == 2.0
    analysis = ensure_analysis(info.run_dir, model)
    rate = model.spec.sample_rate
    wave = synth.generate(model, analysis, seed=2, duration_s=2.5)[0]
    assert len(wave) == round(2.5 * rate) and np.isfinite(wave).all() and np.abs(wave).max() > 0.01
    source = wave[: rate]
    out = transform_variation(model, analysis, source, GenerationSettings(seed=1, variation_amount=0.0).validated(analysis), 0)
    assert len(out) == len(source) and np.isfinite(out).all()
    with pytest.raises(RunError, match="earlier segment model"):
        TrainingRunner(segment_data, after_training=analyse_trained_run, in_process=True).resume(info.model_id, lambda event: None,
                                                             epochs=info.epochs_trained + 2)
