"""Reading and checking audio files with real files written by the test."""
import numpy as np
import pytest
import soundfile as sf

from sda_web.audio import io as audio_io
from sda_web.audio.io import AudioRejected, inspect_audio, load_mono


def tone(seconds, rate=48000, freq=440.0, channels=1, level=0.5):
    t = np.arange(int(seconds * rate)) / rate
    wave = level * np.sin(2 * np.pi * freq * t)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def rejected_reason(path, **kwargs):
    with pytest.raises(AudioRejected) as info:
        inspect_audio(path, **kwargs)
    assert info.value.reason == str(info.value)
    assert info.value.reason.endswith(".")
    return info.value.reason


@pytest.mark.parametrize("fmt, ext", [("WAV", ".wav"), ("FLAC", ".flac"), ("OGG", ".ogg")])
def test_common_formats_are_read(tmp_path, fmt, ext):
    path = tmp_path / f"tone{ext}"
    sf.write(path, tone(0.5, rate=44100, channels=2), 44100, format=fmt)
    info = inspect_audio(path)
    assert info.format == fmt
    assert (info.sample_rate, info.channels) == (44100, 2)
    assert info.duration_s == pytest.approx(0.5, abs=0.01)
    assert load_mono(path, 44100).shape[0] == info.frames


def test_mp3_is_read_when_libsndfile_supports_it(tmp_path):
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile has no MP3 support")
    path = tmp_path / "tone.mp3"
    try:
        sf.write(path, tone(0.5), 48000, format="MP3")
    except Exception:
        pytest.skip("this libsndfile cannot write MP3")
    assert inspect_audio(path).format == "MP3"


def test_a_60ms_click_is_accepted(tmp_path):
    path = tmp_path / "click.wav"
    click = np.zeros(int(0.06 * 48000))
    click[:40] = np.hanning(40)
    sf.write(path, click, 48000)
    assert inspect_audio(path).duration_s == pytest.approx(0.06)


def test_garbage_with_a_wav_extension_is_not_audio(tmp_path):
    path = tmp_path / "fake.wav"
    path.write_bytes(b"this is not RIFF data at all" * 50)
    assert "not an audio file" in rejected_reason(path).lower()


def test_missing_file_says_it_could_not_be_read(tmp_path):
    assert "could not be read" in rejected_reason(tmp_path / "nope.wav")


def test_empty_file_is_rejected(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros((0, 1)), 48000)
    assert "empty" in rejected_reason(path)


def test_ten_samples_is_too_short_and_says_the_minimum(tmp_path):
    path = tmp_path / "tiny.wav"
    sf.write(path, np.full(10, 0.5), 48000)
    reason = rejected_reason(path)
    assert "too short" in reason and "43 ms" in reason


def test_silence_is_rejected(tmp_path):
    path = tmp_path / "silent.wav"
    sf.write(path, np.full(48000, 1e-5), 48000, subtype="FLOAT")
    assert "silent" in rejected_reason(path)


def test_nan_samples_are_rejected(tmp_path):
    path = tmp_path / "nan.wav"
    wave = tone(0.5).astype(np.float32)
    wave[1000] = np.nan
    sf.write(path, wave, 48000, subtype="FLOAT")
    assert "NaN" in rejected_reason(path)


def test_longer_than_the_cap_is_rejected_and_says_the_cap(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, tone(3.0), 48000)
    assert "limit per file is 2 s" in rejected_reason(path, max_seconds=2)


def test_the_default_cap_is_ten_minutes_and_is_checked_before_reading():
    assert audio_io.MAX_FILE_SECONDS == 600
    with pytest.raises(AudioRejected, match="limit per file is 10 minutes"):
        audio_io._check_length(48000 * 601, 48000, audio_io.MAX_FILE_SECONDS)


def test_absurd_sample_rate_is_rejected(tmp_path):
    path = tmp_path / "slow.wav"
    sf.write(path, tone(1.0, rate=2000, freq=100), 2000)
    assert "2000 Hz" in rejected_reason(path)


def test_too_many_channels_is_rejected(tmp_path):
    path = tmp_path / "many.wav"
    sf.write(path, np.full((4800, 65), 0.1), 48000, format="WAV")
    assert "65 channels" in rejected_reason(path)


def test_stereo_44k1_loads_as_mono_24k_with_the_right_length(tmp_path):
    path = tmp_path / "stereo.wav"
    left = tone(1.0, rate=44100, freq=300)
    sf.write(path, np.stack([left, -0.5 * left], axis=1), 44100)
    mono = load_mono(path, 24000)
    assert mono.dtype == np.float32 and mono.ndim == 1
    assert len(mono) == 24000
    # average of the channels: 0.25 * sine -> peak about 0.125
    assert np.abs(mono).max() == pytest.approx(0.125, abs=0.01)


def test_loading_at_the_file_rate_skips_resampling(tmp_path):
    path = tmp_path / "same.wav"
    sf.write(path, tone(0.2, rate=24000), 24000, subtype="FLOAT")
    mono = load_mono(path, 24000)
    np.testing.assert_allclose(mono, tone(0.2, rate=24000).astype(np.float32), atol=1e-7)


def test_a_zero_byte_file_says_it_is_empty(tmp_path):
    path = tmp_path / "nothing.wav"
    path.write_bytes(b"")
    assert rejected_reason(path) == "It is empty (0 bytes)."


def test_a_one_sample_file_is_too_short_in_samples(tmp_path):
    path = tmp_path / "one.wav"
    sf.write(path, np.array([0.5], dtype=np.float32), 48000)
    assert "too short (1 sample)" in rejected_reason(path)


def test_a_wav_cut_short_is_rejected_as_damaged(tmp_path):
    path = tmp_path / "cut.wav"
    sf.write(path, tone(1.0), 48000, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "cut short: only 50% of its audio data" in rejected_reason(path)


def test_a_damaged_ogg_says_damaged_not_not_audio(tmp_path):
    path = tmp_path / "cut.ogg"
    sf.write(path, tone(1.0), 48000, format="OGG")
    path.write_bytes(path.read_bytes()[:60])
    assert "damaged or cut short" in rejected_reason(path)


def test_load_mono_mixes_many_channels_block_by_block(tmp_path):
    path = tmp_path / "many.wav"
    wave = np.tile(tone(0.5, rate=24000)[:, None], (1, 32)).astype(np.float32)
    wave[:, 1::2] = 0.0
    sf.write(path, wave, 24000, subtype="FLOAT")
    mono = load_mono(path, 24000)
    assert mono.shape == (12000,) and np.allclose(mono, wave[:, 0] / 2, atol=1e-6)
