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
# The shortest usable file: one analysis frame, 42.7 ms (n_fft 2048 at 48 kHz, as the old
# front end's 1024 at 24 kHz). A file shorter than that cannot give even one spectrogram frame;
# anything longer is usable, however short (clicks, drum hits), because training pads short sounds.
MIN_FRAME_SAMPLES, MIN_FRAME_RATE = 2048, 48_000
READ_BLOCK = 65_536

_NOT_AUDIO = "Not an audio file soundfile can read (WAV, FLAC, OGG, MP3 or AIFF)."
# The first bytes of the formats we read: a file that starts like one of them
# but cannot be opened is damaged, not "not audio".
_MAGIC = ((b"RIFF", "WAV"), (b"RF64", "WAV"), (b"fLaC", "FLAC"), (b"OggS", "OGG"), (b"FORM", "AIFF"),
          (b"ID3", "MP3"), (b"\xff\xfb", "MP3"), (b"\xff\xf3", "MP3"), (b"\xff\xf2", "MP3"))


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
    return math.ceil(MIN_FRAME_SAMPLES * sample_rate / MIN_FRAME_RATE)


def min_duration_ms() -> int:
    return round(1000 * MIN_FRAME_SAMPLES / MIN_FRAME_RATE)


def inspect_audio(path, max_seconds: float = MAX_FILE_SECONDS) -> AudioInfo:
    """Read the whole file (block by block) and return its facts, or raise AudioRejected."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise AudioRejected(f"It could not be read ({exc.strerror or exc}).") from None
    if size == 0:
        raise AudioRejected("It is empty (0 bytes).")
    try:
        info = sf.info(str(path))
    except Exception:
        kind = _looks_like(path)
        if kind:
            raise AudioRejected(f"It starts like a {kind} file but cannot be decoded; it seems damaged or cut short.") from None
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
    if str(info.format).upper() == "WAV":
        _check_wav_complete(path, size)

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
        length = f"{1000 * frames / rate:.1f} ms" if frames * 1000 >= rate else f"{frames} sample{'s' * (frames != 1)}"
        raise AudioRejected(f"It is too short ({length}); a sound must be at least {min_duration_ms()} ms long.")


def _looks_like(path: Path) -> str | None:
    with open(path, "rb") as f:
        head = f.read(4)
    return next((kind for magic, kind in _MAGIC if head.startswith(magic)), None)


def _check_wav_complete(path: Path, size: int) -> None:
    """libsndfile silently reads a WAV whose data chunk was cut short (an
    interrupted copy or download); compare the size its header declares with
    the bytes that are really there."""
    with open(path, "rb") as f:
        header = f.read(12)
        if header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return  # RF64 and friends: trust libsndfile
        offset = 12
        while offset + 8 <= size:
            f.seek(offset)
            chunk = f.read(8)
            if len(chunk) < 8:
                return
            chunk_id, chunk_size = chunk[:4], int.from_bytes(chunk[4:8], "little")
            if chunk_id == b"data":
                if chunk_size != 0xFFFFFFFF and offset + 8 + chunk_size > size:
                    have = 100 * (size - offset - 8) / max(chunk_size, 1)
                    raise AudioRejected(f"The file is cut short: only {have:.0f}% of its audio data is there.")
                return
            offset += 8 + chunk_size + (chunk_size & 1)


def _fmt_seconds(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute" + ("s" if minutes != 1 else "")
    if seconds >= 60:
        return f"{int(seconds // 60)} min {seconds % 60:.0f} s"
    return f"{seconds:g} s" if seconds == int(seconds) else f"{seconds:.1f} s"


def load_mono(path, sample_rate: int) -> np.ndarray:
    """The file as float32 mono (channels averaged) at `sample_rate`.

    Read and mixed down block by block, so a many-channel file never sits in
    memory with all its channels at once."""
    try:
        rate = sf.info(str(path)).samplerate
        blocks = [block.mean(axis=1, dtype=np.float32)
                  for block in sf.blocks(str(path), blocksize=READ_BLOCK, dtype="float32", always_2d=True)]
    except Exception:
        raise AudioRejected(_NOT_AUDIO) from None
    mono = np.ascontiguousarray(np.concatenate(blocks) if blocks else np.zeros(0, np.float32))
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
