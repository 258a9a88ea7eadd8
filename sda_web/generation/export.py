"""Audio files and pictures of generated sounds.

`AudioFormat` is one validated choice of container, bit depth and sample rate;
`encode_audio` turns float samples into the bytes of such a file and
`write_audio` writes one atomically. `waveform_svg` draws a min/max envelope
as a small, self-contained SVG string (pure: numpy in, text out).

No torch at module level (resampling imports it when asked to).
"""
from __future__ import annotations

import html
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..audio.io import resample
from ..storage import atomic_write_bytes

FORMATS = ("wav", "flac")
BIT_DEPTHS = (16, 24)
EXPORT_RATES = (44_100, 48_000)  # besides the model's own rate
_MIME = {"wav": "audio/wav", "flac": "audio/flac"}


class ExportError(ValueError):
    """An export choice is not supported; the message lists what is."""


@dataclass(frozen=True)
class AudioFormat:
    format: str = "wav"
    bits: int = 16
    rate: int | None = None  # None: the model's own sample rate

    @classmethod
    def parse(cls, format: str = "wav", bits: int | str = 16, rate: int | str | None = None) -> "AudioFormat":
        """Validate user choices ("flac", "24", "48000" or "model") into an AudioFormat."""
        name = str(format or "wav").strip().lower().lstrip(".")
        if name not in FORMATS:
            raise ExportError(f"Unknown audio format {format!r}; choose wav or flac.")
        try:
            depth = int(str(bits).strip())
        except ValueError:
            depth = None
        if depth not in BIT_DEPTHS:
            raise ExportError(f"Bit depth must be 16 or 24, got {bits!r}.")
        if rate is None or str(rate).strip().lower() in ("", "model", "native"):
            chosen = None
        else:
            try:
                chosen = int(float(str(rate).strip()))
            except ValueError:
                chosen = -1
            if chosen not in EXPORT_RATES:
                raise ExportError(f"Sample rate must be the model's own, 44100 or 48000 Hz, got {rate!r}.")
        return cls(name, depth, chosen)

    @property
    def extension(self) -> str:
        return "." + self.format

    @property
    def mime_type(self) -> str:
        return _MIME[self.format]

    @property
    def subtype(self) -> str:
        return f"PCM_{self.bits}"

    def output_rate(self, model_rate: int) -> int:
        return self.rate or int(model_rate)

    def to_dict(self) -> dict:
        return {"format": self.format, "bits": self.bits, "rate": self.rate}

    @classmethod
    def from_dict(cls, data: dict) -> "AudioFormat":
        return cls.parse(data.get("format", "wav"), data.get("bits", 16), data.get("rate"))


def convert_rate(wave: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Band-limited resampling (torchaudio's polyphase sinc); deterministic."""
    if int(from_rate) == int(to_rate) or len(wave) == 0:
        return np.asarray(wave, dtype=np.float32)

    return resample(np.asarray(wave, dtype=np.float32), int(from_rate), int(to_rate))


def encode_audio(wave: np.ndarray, sample_rate: int, fmt: AudioFormat = AudioFormat()) -> bytes:
    """Float mono samples at `sample_rate` -> the bytes of a WAV/FLAC file in `fmt`."""
    rate = fmt.output_rate(sample_rate)
    data = np.clip(convert_rate(wave, sample_rate, rate), -1.0, 1.0).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, data, rate, subtype=fmt.subtype, format=fmt.format.upper())
    return buffer.getvalue()


def write_audio(path: Path, wave: np.ndarray, sample_rate: int, fmt: AudioFormat = AudioFormat()) -> Path:
    """Write atomically (temp file + rename); returns the path."""
    path = Path(path)
    atomic_write_bytes(path, encode_audio(wave, sample_rate, fmt))
    return path


def waveform_svg(wave: np.ndarray, *, columns: int = 300, width: int = 600, height: int = 80,
                 label: str | None = None) -> str:
    """A min/max envelope of `wave` as an SVG string, `columns` wide in data points.

    Drawn with fill="currentColor" (it takes the text colour of its container)
    and preserveAspectRatio="none" (it stretches to whatever box CSS gives it)."""
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    columns = max(1, min(int(columns), len(wave))) if len(wave) else 1
    if len(wave):
        edges = np.linspace(0, len(wave), columns + 1).astype(np.int64)
        highs = np.maximum.reduceat(wave, edges[:-1])
        lows = np.minimum.reduceat(wave, edges[:-1])
    else:
        highs = lows = np.zeros(1, dtype=np.float32)
    peak = max(float(np.abs(wave).max()) if len(wave) else 0.0, 1e-9)
    scale = 1.0 / peak if peak > 1.0 else 1.0  # never draw outside the box
    mid = height / 2
    step = width / columns
    # At least a hairline, so silence still shows as a line.
    top = [mid - max(float(h) * scale, 0.0) * (mid - 1) - 0.5 for h in highs]
    bottom = [mid - min(float(v) * scale, 0.0) * (mid - 1) + 0.5 for v in lows]
    xs = [(i + 0.5) * step for i in range(columns)]
    points = [f"{x:.1f},{y:.1f}" for x, y in zip(xs, top)]
    points += [f"{x:.1f},{y:.1f}" for x, y in zip(reversed(xs), reversed(bottom))]
    path = "M" + " L".join(points) + " Z"
    text = html.escape(label or f"Waveform, {len(wave)} samples", quote=True)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="waveform" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" preserveAspectRatio="none" role="img" aria-label="{text}">'
            f'<path d="{path}" fill="currentColor"/></svg>')
