"""A small, varied, deterministic set of synthetic sounds to try the app with.

Numpy only (no torch). Kinds cycle so that any `count` gets a mix; each draw
varies pitch, brightness and loudness so latent controls have something to find.
Some files are stereo and some 44.1 kHz, to exercise mixing down and resampling.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def write_demo_sounds(folder, count: int = 24, seed: int = 0) -> list[Path]:
    """Write `count` WAVs (16-bit) into `folder`; same seed -> byte-identical files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        kind = _KINDS[i % len(_KINDS)]
        rate = 44_100 if i % 5 == 2 else 48_000
        stereo = i % 4 == 1 or kind in ("pad",)
        wave = _SYNTHS[kind](rng, rate)
        if stereo:
            wave = _widen(wave, rng, rate)
        wave = _fade(wave, rate)
        peak_db = rng.uniform(-20.0, -1.0)  # varied loudness
        wave = wave / max(np.abs(wave).max(), 1e-9) * 10 ** (peak_db / 20)
        path = folder / f"demo_{i + 1:02d}_{kind}.wav"
        sf.write(str(path), wave.astype(np.float32), rate, subtype="PCM_16", format="WAV")
        paths.append(path)
    return paths


def _t(rate: int, seconds: float) -> np.ndarray:
    return np.arange(int(seconds * rate)) / rate


def _pluck(rng, rate):
    """Karplus-Strong string: a noise burst in a delay line with a lowpassing average."""
    freq = rng.uniform(80, 660)
    n = int(rng.uniform(1.5, 3.0) * rate)
    period = max(2, int(round(rate / freq)))
    damping = rng.uniform(0.985, 0.999)
    brightness = rng.uniform(0.2, 1.0)  # low = dull pick, high = bright pick
    burst = rng.uniform(-1, 1, period)
    burst = brightness * burst + (1 - brightness) * np.convolve(burst, np.ones(8) / 8, mode="same")
    y = np.zeros(n + period + 1)
    y[1 : period + 1] = burst
    # Block recursion: y[k] = d * (y[k-P] + y[k-P-1]) / 2 only reads earlier blocks.
    for start in range(period + 1, len(y), period):
        stop = min(start + period, len(y))
        y[start:stop] = damping * 0.5 * (y[start - period : stop - period] + y[start - period - 1 : stop - period - 1])
    return y[period + 1 :]


def _bell(rng, rate):
    """FM bell: inharmonic ratio, modulation index decaying faster than the tone."""
    t = _t(rate, rng.uniform(2.5, 4.0))
    carrier = rng.uniform(200, 1200)
    ratio = rng.choice([1.4, 2.76, 3.5, 1.21])
    index = rng.uniform(1.0, 8.0)  # brightness
    decay = rng.uniform(0.6, 2.0)
    env = np.exp(-t / decay)
    mod = index * np.exp(-t / (decay * 0.4)) * np.sin(2 * np.pi * carrier * ratio * t)
    return env * np.sin(2 * np.pi * carrier * t + mod)


def _kick(rng, rate):
    t = _t(rate, rng.uniform(0.3, 0.6))
    f0, f1 = rng.uniform(120, 220), rng.uniform(40, 60)
    sweep = f1 + (f0 - f1) * np.exp(-t / rng.uniform(0.02, 0.06))
    phase = 2 * np.pi * np.cumsum(sweep) / rate
    body = np.sin(phase) * np.exp(-t / rng.uniform(0.08, 0.25))
    beater = _spectral_filter(rng.uniform(-1, 1, len(t)), rate, lo=200, hi=rng.uniform(1500, 4000))
    click = rng.uniform(0, 0.5) * beater * np.exp(-t / 0.004)
    return body + click


def _snare(rng, rate):
    t = _t(rate, rng.uniform(0.18, 0.4))
    noise = _spectral_filter(rng.uniform(-1, 1, len(t)), rate, lo=rng.uniform(800, 2000), hi=rng.uniform(6000, 11000))
    tone = np.sin(2 * np.pi * rng.uniform(160, 240) * t) * np.exp(-t / 0.04)
    return noise * np.exp(-t / rng.uniform(0.05, 0.12)) + rng.uniform(0.3, 1.0) * tone


def _hat(rng, rate):
    t = _t(rate, rng.uniform(0.07, 0.3))
    noise = _spectral_filter(rng.uniform(-1, 1, len(t)), rate, lo=rng.uniform(5000, 9000), hi=rate / 2)
    return noise * np.exp(-t / rng.uniform(0.015, 0.08))


def _swell(rng, rate):
    """Filtered noise that fades in while it opens up (brightness moves over time)."""
    t = _t(rate, rng.uniform(2.5, 4.0))
    noise = rng.uniform(-1, 1, len(t))
    centre = rng.uniform(300, 3000)
    dark = _spectral_filter(noise, rate, lo=centre * 0.5, hi=centre * 1.5)
    bright = _spectral_filter(noise, rate, lo=centre, hi=min(centre * 6, rate / 2))
    x = t / t[-1]
    return (x**2) * ((1 - x) * dark / _rms(dark) + x * bright / _rms(bright))


def _pad(rng, rate):
    """Detuned harmonic stack with a slow LFO on level and on the upper partials."""
    t = _t(rate, rng.uniform(3.0, 4.0))
    root = rng.uniform(90, 330)
    harmonics = int(rng.integers(2, 12))  # brightness
    lfo = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.2, 1.0) * t)
    # One period of the low and of the upper partials as wavetables: a lookup per
    # sample is far cheaper than a sine per partial per sample.
    cycle = np.arange(4096) / 4096
    low = sum(np.sin(2 * np.pi * h * cycle + h) / h for h in range(1, min(harmonics, 2) + 1))
    high = np.zeros_like(cycle)
    for h in range(3, harmonics + 1):
        high += np.sin(2 * np.pi * h * cycle + h) / h
    out = np.zeros_like(t)
    for detune in (-0.004, 0.0, 0.005):
        idx = ((root * (1 + detune) * t) % 1.0 * 4096).astype(np.int64)
        out += low[idx] + (0.4 + 0.6 * lfo) * high[idx]
    attack = np.minimum(1.0, t / 0.6)
    return out * attack * (0.6 + 0.4 * lfo)


def _chirp(rng, rate):
    """Exponential sweep, up (riser) or down."""
    t = _t(rate, rng.uniform(0.8, 2.5))
    f0, f1 = rng.uniform(100, 500), rng.uniform(2000, 9000)
    if rng.random() < 0.4:
        f0, f1 = f1, f0
    freq = f0 * (f1 / f0) ** (t / t[-1])
    tone = np.sin(2 * np.pi * np.cumsum(freq) / rate)
    if rng.random() < 0.5:  # a saw-ish edge for a brighter variant
        tone = np.tanh(rng.uniform(1.5, 5.0) * tone)
    return tone * np.minimum(1.0, t / 0.05)


def _click(rng, rate):
    """60 ms: a very short one-shot, to check that short sounds are handled."""
    t = _t(rate, 0.06)
    ping = np.sin(2 * np.pi * rng.uniform(1500, 6000) * t) * np.exp(-t / rng.uniform(0.003, 0.012))
    tick = rng.uniform(-1, 1, len(t)) * np.exp(-t / 0.002)
    return ping + rng.uniform(0.2, 1.0) * tick


_SYNTHS = {
    "pluck": _pluck, "bell": _bell, "kick": _kick, "pad": _pad, "snare": _snare,
    "swell": _swell, "hat": _hat, "chirp": _chirp, "click": _click,
}
_KINDS = list(_SYNTHS)


def _spectral_filter(x: np.ndarray, rate: int, lo: float, hi: float) -> np.ndarray:
    """Band-pass by masking the spectrum (smooth 1/4-octave-ish edges)."""
    size = 1 << (len(x) - 1).bit_length()  # power-of-two FFTs are many times faster
    spectrum = np.fft.rfft(x, n=size)
    freqs = np.fft.rfftfreq(size, 1 / rate)
    mask = 1 / (1 + (lo / np.maximum(freqs, 1.0)) ** 4) / (1 + (freqs / max(hi, 1.0)) ** 4)
    return np.fft.irfft(spectrum * mask, n=size)[: len(x)]


def _widen(wave: np.ndarray, rng, rate: int) -> np.ndarray:
    """Stereo from mono: a few ms of delay on one side and a small level offset."""
    delay = int(rng.uniform(0.0005, 0.004) * rate)
    right = np.concatenate([np.zeros(delay), wave[: len(wave) - delay]])
    return np.stack([wave, rng.uniform(0.6, 1.0) * right], axis=1)


def _fade(wave: np.ndarray, rate: int) -> np.ndarray:
    """2 ms fade in, 5 ms fade out: no clicks at the edges."""
    n = len(wave)
    ramp = np.ones(n)
    a, b = min(n // 4, int(0.002 * rate)), min(n // 4, int(0.005 * rate))
    ramp[:a] = np.linspace(0, 1, a, endpoint=False)
    ramp[n - b :] = np.linspace(1, 0, b)
    return wave * (ramp[:, None] if wave.ndim == 2 else ramp)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)) + 1e-12)
