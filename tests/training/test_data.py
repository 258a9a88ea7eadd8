import math

import pytest
import torch

from sda_web.audio.features import BandSpec
from sda_web.model.lengths import head_frames
from sda_web.model.stats import FeatureStats
from sda_web.training.data import Example, SoundBank, augment
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


def test_sound_bank_keeps_one_shots_whole_and_windows_inside_long_sounds():
    spec = BandSpec()
    frames = head_frames(spec, 1.0)
    assert frames % 4 == 0 and frames * spec.hop_length >= spec.sample_rate
    # File 0: a 10-frame one-shot; file 1: 300 frames counting up, so windows can be traced.
    short = torch.full((spec.n_bands, 10), 5.0)
    long = torch.arange(300.0).expand(spec.n_bands, 300)
    bank = SoundBank([short, long], FeatureStats(0.0, 1.0), spec, frames, torch.device("cpu"))
    silence = math.log(spec.log_floor)
    examples = bank.random_examples(torch.Generator().manual_seed(0))
    assert len(examples) == bank.segments_per_epoch == 1 + round(bank.lengths[1] / frames)
    one_shot = [e for e in examples if e.file == 0]
    assert one_shot == [Example(0, 0, 20)]  # whole, with a tail of silence (it learns to end), not 1 s
    windows = [e for e in examples if e.file == 1]
    assert windows[0].offset == 0 and all(e.offset % 4 == 0 and e.length == frames for e in windows)
    batch = bank.collate(examples)
    assert batch.windows.shape == (len(examples), spec.n_bands, frames)  # padded to the longest
    for k, e in enumerate(examples):
        row = batch.windows[k, 0]
        if e.file == 0:
            assert torch.all(row[:10] == 5.0) and torch.all(row[10:] == silence)
        else:  # a contiguous run of the long sound from its offset, never crossing into another file
            assert row[0] == e.offset and torch.all(row[1:] - row[:-1] == 1.0)
    later = [k for k, e in enumerate(examples) if e.offset > 0]
    assert batch.head_index.tolist() == later  # a window inside a sound brings its sound's head
    assert torch.all(batch.heads[:, 0, :] == torch.arange(float(frames)))
    fixed = bank.fixed_examples()
    assert fixed == bank.fixed_examples() and fixed[0] == Example(0, 0, 20)


def test_batches_group_similar_lengths():
    spec = BandSpec()
    feats = [torch.zeros(spec.n_bands, n) for n in (8, 9, 10, 100, 101, 102, 40, 41, 42)]
    bank = SoundBank(feats, FeatureStats(0.0, 1.0), spec, 256, torch.device("cpu"))
    groups = bank.batches(bank.random_examples(torch.Generator().manual_seed(0)), 3, torch.Generator().manual_seed(1))
    assert [len(g) for g in groups] == [3, 3, 3]
    for group in groups:  # no 0.1-s sound padded to a 1.2-s one
        lengths = [e.length for e in group]
        assert max(lengths) <= 2 * min(lengths)


def test_augmentation_shifts_gain_and_bands_but_never_below_silence():
    batch = torch.randn(8, 80, 32)
    out = augment(batch, gain_db=6.0, band_shift=2, silence=-2.0, std=3.0, generator=torch.Generator().manual_seed(1))
    assert out.shape == batch.shape and out.min() >= -2.0
    assert not torch.equal(out, batch)


def test_a_window_and_its_sounds_head_get_the_same_augmentation():
    from sda_web.training.data import augment_batch, draw_augmentation

    spec = BandSpec()
    long = torch.arange(400.0).expand(spec.n_bands, 400) / 100
    bank = SoundBank([long, torch.zeros(spec.n_bands, 30)], FeatureStats(0.0, 1.0), spec, 64, torch.device("cpu"))
    examples = [e for e in bank.random_examples(torch.Generator().manual_seed(2)) if e.file == 0 and e.offset > 0]
    batch = bank.collate(examples)
    out = augment_batch(batch, gain_db=6.0, band_shift=0, silence=-50.0, std=1.0, generator=torch.Generator().manual_seed(3))
    window_gain = (out.windows - batch.windows).mean(dim=(1, 2))
    head_gain = (out.heads - batch.heads).mean(dim=(1, 2))
    assert torch.allclose(window_gain, head_gain, atol=1e-5) and float(window_gain.abs().max()) > 0


def test_each_batch_carries_its_sounds_descriptors_and_a_gain_makes_them_louder():
    from sda_web.audio.features import log_features
    from sda_web.model.sound_vae import ATTRIBUTES
    from sda_web.training.data import augment_batch, draw_augmentation

    spec = BandSpec()
    t = torch.arange(spec.sample_rate // 2) / spec.sample_rate
    dull = 0.3 * torch.sin(2 * math.pi * 200 * t) * torch.exp(-t / 0.05)
    bright = 0.3 * torch.sin(2 * math.pi * 4000 * t + 0.3) * torch.exp(-t / 0.2)
    feats = [log_features(w, spec) for w in (dull, bright)]
    bank = SoundBank(feats, FeatureStats(-10.0, 5.0), spec, head_frames(spec, 1.0), torch.device("cpu"))
    brightness, loudness, decay = (ATTRIBUTES.index(n) for n in ("brightness", "loudness", "decay"))
    assert bank.attributes[1, brightness] > 4 * bank.attributes[0, brightness]  # Hz
    assert bank.attributes[1, decay] > bank.attributes[0, decay] + 1  # log2 seconds: more than twice as long
    batch = bank.collate(bank.fixed_examples())
    assert torch.equal(batch.attributes, bank.attributes[[e.file for e in bank.fixed_examples()]])
    louder = augment_batch(batch, 6.0, 0, bank.silence, 5.0, torch.Generator().manual_seed(3))
    gain, _ = draw_augmentation(2, 6.0, 0, torch.Generator().manual_seed(3))  # the same draw
    moved = louder.attributes - batch.attributes
    assert torch.allclose(moved[:, loudness], gain.float()) and float(gain.abs().min()) > 0.1
    # the windows moved by that many dB where they are above the floor
    top = batch.windows.amax(dim=(1, 2))
    rose = (louder.windows.amax(dim=(1, 2)) - top) * 5.0 * 10 / math.log(10)
    assert torch.allclose(rose, gain.float(), atol=1e-3)
    assert torch.equal(moved[:, brightness], torch.zeros(2))
