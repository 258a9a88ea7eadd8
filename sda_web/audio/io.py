"""Reading audio files: checking that a file is usable, and loading it as mono.

No torch at module level: the web server imports this at start-up. Only
`load_mono` needs torch (to resample), and imports it when it does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

MAX_FILE_SECONDS = 600
AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff"}

MIN_SAMPLE_RATE = 4_000
MAX_SAMPLE_RATE = 768_000
MAX_CHANNELS = 64
SILENCE_PEAK = 1e-4  # -80 dBFS: anything quieter is treated as silence
# One analysis frame of the mel front end (n_fft=1024 at 24 kHz). A file shorter
# than that cannot give even one spectrogram frame; anything longer is usable,
# however short (clicks, drum hits), because training pads short sounds.
MIN_FRAME_SAMPLES = 1024
FEATURE_RATE = 24_000
READ_BLOCK = 65_536

_NOT_AUDIO = "Not an audio file soundfile can read (WAV, FLAC, OGG, MP3 or AIFF)."


class AudioRejected(Exception):
    """A file that cannot be used as training audio; `.reason` says why in one sentence."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class AudioInfo:
    duration_s: float
    sample_rate: int
    channels: int
    frames: int
    format: str  # soundfile's major format name: WAV, FLAC, OGG, MP3, AIFF...


def min_frames(sample_rate: int) -> int:
    """The fewest samples at `sample_rate` that hold one analysis frame."""
    return math.ceil(MIN_FRAME_SAMPLES * sample_rate / FEATURE_RATE)


def min_duration_ms() -> int:
    return round(1000 * MIN_FRAME_SAMPLES / FEATURE_RATE)


def inspect_audio(path, max_seconds: float = MAX_FILE_SECONDS) -> AudioInfo:
    """Read the whole file (block by block) and return its facts, or raise AudioRejected."""
    path = Path(path)
    try:
        info = sf.info(str(path))
    except Exception:
        raise AudioRejected(_NOT_AUDIO) from None

    rate, channels = int(info.samplerate), int(info.channels)
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioRejected(
            f"Its sample rate of {rate} Hz is outside the supported range "
            f"({MIN_SAMPLE_RATE} Hz to {MAX_SAMPLE_RATE // 1000} kHz)."
        )
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioRejected(f"It has {channels} channels; at most {MAX_CHANNELS} are supported.")
    _check_length(int(info.frames), rate, max_seconds)

    frames, peak, finite = 0, 0.0, True
    try:
        for block in sf.blocks(str(path), blocksize=READ_BLOCK, dtype="float32", always_2d=True):
            frames += len(block)
            if not np.isfinite(block).all():
                finite = False
                break
            if len(block):
                peak = max(peak, float(np.abs(block).max()))
            if frames > max_seconds * rate:
                break
    except Exception:
        raise AudioRejected("The file could not be read to the end; it seems damaged.") from None

    if not finite:
        raise AudioRejected("It contains invalid samples (NaN or infinity); re-export it from your editor.")
    _check_length(frames, rate, max_seconds)  # the header can lie (e.g. MP3 estimates)
    if peak < SILENCE_PEAK:
        raise AudioRejected("It is silent (its peak level is below -80 dBFS).")
    return AudioInfo(
        duration_s=frames / rate, sample_rate=rate, channels=channels, frames=frames, format=str(info.format)
    )


def _check_length(frames: int, rate: int, max_seconds: float) -> None:
    if frames <= 0:
        raise AudioRejected("It is empty (it holds no audio samples).")
    if frames > max_seconds * rate:
        raise AudioRejected(
            f"It is {_fmt_seconds(frames / rate)} long; the limit per file is {_fmt_seconds(max_seconds)}."
        )
    if frames < min_frames(rate):
        raise AudioRejected(
            f"It is too short ({1000 * frames / rate:.1f} ms); a sound must be at least "
            f"{min_duration_ms()} ms long."
        )


def _fmt_seconds(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute" + ("s" if minutes != 1 else "")
    if seconds >= 60:
        return f"{int(seconds // 60)} min {seconds % 60:.0f} s"
    return f"{seconds:g} s" if seconds == int(seconds) else f"{seconds:.1f} s"


def load_mono(path, sample_rate: int) -> np.ndarray:
    """The file as float32 mono (channels averaged) at `sample_rate`."""
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception:
        raise AudioRejected(_NOT_AUDIO) from None
    mono = np.ascontiguousarray(data.mean(axis=1, dtype=np.float32))
    if int(rate) == int(sample_rate) or len(mono) == 0:
        return mono
    return resample(mono, int(rate), int(sample_rate))


def resample(wave: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    import torch
    import torchaudio.functional as AF

    # torchaudio's polyphase kernel has orig/gcd phases: an odd rate (44101 Hz) would
    # build a gigantic kernel. Rounding such a rate to 100 Hz shifts pitch < 1.3 %.
    if orig_rate // math.gcd(orig_rate, new_rate) > 2_000:
        orig_rate = max(100, round(orig_rate / 100) * 100)
    with torch.no_grad():
        out = AF.resample(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), orig_rate, new_rate)
    return out.numpy().astype(np.float32, copy=False)
