import math

import pytest
import torch

from sda_web.audio.features import BandSpec
from sda_web.training.data import FeatureStats, SegmentBank, augment, segment_frames
from sda_web.training.split import split_by_file


@pytest.mark.parametrize("count", [1, 2, 3, 5, 20, 500])
def test_split_is_by_file_deterministic_and_keeps_a_validation_file(count):
    train, val = split_by_file(count, 0.2, seed=7)
    assert (train, val) == split_by_file(count, 0.2, seed=7)
    assert sorted(train + val) == list(range(count))
    assert len(train) >= 1
    assert len(val) >= (1 if count >= 2 else 0)


def test_different_seeds_give_different_splits():
    assert split_by_file(20, 0.2, 1)[1] != split_by_file(20, 0.2, 2)[1]


def test_segment_bank_pads_one_shots_and_keeps_windows_inside_files():
    spec = BandSpec()
    frames = segment_frames(spec, 1.0)
    assert frames % 16 == 0 and frames * spec.hop_length >= spec.sample_rate
    # File 0: a 10-frame one-shot; file 1: 300 frames counting up, so windows can be traced.
    short = torch.full((spec.n_bands, 10), 5.0)
    long = torch.arange(300.0).expand(spec.n_bands, 300)
    bank = SegmentBank([short, long], FeatureStats(0.0, 1.0), spec, frames, torch.device("cpu"))
    assert bank.per_file == [1, 3]
    silence = math.log(spec.log_floor)
    positions = bank.random_positions(torch.Generator().manual_seed(0))
    assert len(positions) == bank.segments_per_epoch == 4
    windows = bank.gather(positions)
    assert windows.shape == (4, spec.n_bands, frames)
    for window in windows:
        row = window[0]
        if row[0] == 5.0:  # the one-shot, then silence padding
            assert torch.all(row[10:] == silence)
        else:  # a contiguous run of the long file, never crossing into another file
            assert torch.all(row[1:] - row[:-1] == 1.0)
    fixed = bank.gather(bank.fixed_positions())
    assert torch.equal(fixed, bank.gather(bank.fixed_positions()))


def test_augmentation_shifts_gain_and_pitch_but_never_below_silence():
    batch = torch.randn(8, 80, 32)
    out = augment(batch, gain_db=6.0, pitch_bins=2, silence=-2.0, std=3.0, generator=torch.Generator().manual_seed(1))
    assert out.shape == batch.shape and out.min() >= -2.0
    assert not torch.equal(out, batch)
