"""The training loop on real (tiny) data: a step that goes non-finite is skipped, not applied."""
import math

import pytest
import torch

from sda_web.audio.features import BandSpec
from sda_web.model import SoundShape
from sda_web.model.stats import FeatureStats
from sda_web.training.config import TrainingConfig
from sda_web.training.data import SoundBank
from sda_web.training.trainer import Trainer, TrainingDiverged

FRAMES = 32


def _trainer(sounds: list[torch.Tensor]) -> Trainer:
    spec = BandSpec()
    bank = SoundBank(sounds, FeatureStats(0.0, 1.0), spec, FRAMES, torch.device("cpu"))
    shape = SoundShape(n_bands=spec.n_bands, frames=FRAMES, latent_dim=4, local_dim=2, width=8, dropout=0.0,
                       frame_seconds=spec.hop_length / spec.sample_rate)
    config = TrainingConfig(epochs=2, batch_size=1, width=8, latent_dim=4, local_dim=2, augment=False)
    return Trainer(config, shape, bank, None, 1.0, torch.device("cpu"))


def _sounds(count: int) -> list[torch.Tensor]:
    torch.manual_seed(0)
    return [torch.randn(BandSpec().n_bands, 16) for _ in range(count)]


def test_a_sound_whose_loss_is_not_finite_is_skipped_and_the_weights_stay_finite():
    sounds = _sounds(4)
    sounds[2][0, 3] = math.inf  # one bad file: its step must not poison the weights
    trainer = _trainer(sounds)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    result = trainer.train_epoch(0)
    assert result.skipped_steps == 1
    assert math.isfinite(result.loss) and math.isfinite(result.recon)
    weights = trainer.model.state_dict()
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert any(not torch.equal(before[k], weights[k]) for k in weights)  # the good steps were applied


def test_an_epoch_that_is_mostly_non_finite_fails_with_one_clear_sentence():
    sounds = _sounds(3)
    for s in sounds[:2]:
        s[0, 0] = math.nan
    trainer = _trainer(sounds)
    with pytest.raises(TrainingDiverged, match=r"became NaN or infinite on 2 of 3 steps of epoch 1 on CPU; lower the learning rate"):
        trainer.train_epoch(0)
