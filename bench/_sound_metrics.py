"""Textbook measures of a made sound against its original (or alone), for the sound benches.

All on an STFT with n_fft 2048, hop 512 (Hann) at the original's rate, in dB.

  lsd        log-spectral distance: mean over frames of the RMS dB difference, both
             floored 80 dB below the original's peak
  hiss       median excess (made - original, dB) over the time-frequency cells where the
             original is more than 60 dB below its peak (both floored 100 dB below it)
  roughness  envelope flutter: mean |second difference| of per-frame energy (dB), over
             the frames within 40 dB of the peak
  onsets     frames where the energy rises by >= 9 dB within 3 frames (35 ms) to within
             30 dB of the peak; rises closer than 100 ms to the previous onset count once
  decay_s    time from the peak until the energy envelope stays 40 dB below it
"""
from __future__ import annotations

import numpy as np

N_FFT, HOP = 2048, 512


def power_spectrogram(wave: np.ndarray) -> np.ndarray:
    """(bins, frames) power of a centred, reflect-padded STFT."""
    wave = np.asarray(wave, dtype=np.float64)
    pad = N_FFT // 2
    if len(wave) < 2:
        wave = np.zeros(N_FFT)
    padded = np.pad(wave, pad, mode="reflect" if len(wave) > pad else "constant")
    frames = 1 + (len(padded) - N_FFT) // HOP
    index = np.arange(N_FFT)[None, :] + HOP * np.arange(frames)[:, None]
    spectrum = np.fft.rfft(padded[index] * np.hanning(N_FFT + 1)[:-1], axis=1)
    return (np.abs(spectrum) ** 2).T


def _floored_db(reference: np.ndarray, estimate: np.ndarray, floor_db: float = 80.0):
    n = min(len(reference), len(estimate))
    ref, est = power_spectrogram(reference[:n]), power_spectrogram(estimate[:n])
    floor = ref.max() * 10 ** (-floor_db / 10)
    return 10 * np.log10(np.maximum(ref, floor)), 10 * np.log10(np.maximum(est, floor))


def lsd(reference: np.ndarray, estimate: np.ndarray) -> float:
    ref_db, est_db = _floored_db(reference, estimate)
    return float(np.sqrt(((ref_db - est_db) ** 2).mean(axis=0)).mean())


def hiss(reference: np.ndarray, estimate: np.ndarray) -> float:
    ref_db, est_db = _floored_db(reference, estimate, floor_db=100.0)
    quiet = ref_db < ref_db.max() - 60
    return float(np.median((est_db - ref_db)[quiet])) if quiet.any() else float("nan")


def energy_db(wave: np.ndarray) -> np.ndarray:
    return 10 * np.log10(np.maximum(power_spectrogram(wave).sum(axis=0), 1e-20))


def roughness(wave: np.ndarray) -> float:
    env = energy_db(wave)
    loud = np.flatnonzero(env >= env.max() - 40)
    if len(loud) < 3:
        return float("nan")
    env = env[loud[0]:loud[-1] + 1]
    return float(np.abs(np.diff(env, 2)).mean())


def onsets(wave: np.ndarray, rate: int) -> list[float]:
    env = energy_db(wave)
    peak = env.max()
    found: list[int] = []
    for k in range(len(env)):
        before = env[max(0, k - 3):k]
        rise = env[k] - (before.min() if len(before) else env[k] - 100.0)  # the first frame is an onset if loud
        if rise >= 9 and env[k] >= peak - 30 and (not found or (k - found[-1]) * HOP / rate >= 0.1):
            if found and k - found[-1] <= 3:
                continue
            found.append(k)
    return [k * HOP / rate for k in found]


def decay_seconds(wave: np.ndarray, rate: int) -> float:
    env = energy_db(wave)
    top = int(env.argmax())
    above = np.flatnonzero(env[top:] >= env[top] - 40)
    return float(above[-1] * HOP / rate)


def descriptors(wave: np.ndarray, rate: int) -> np.ndarray:
    """A simple descriptor vector: 8 octave-band energy shares (dB), centroid (octaves re 1 kHz),
    flatness (dB), decay time (log2 s)."""
    power = power_spectrogram(wave)
    freqs = np.fft.rfftfreq(N_FFT, 1 / rate)
    total = power.sum(axis=1)
    edges = [0, 125, 250, 500, 1000, 2000, 4000, 8000, rate / 2 + 1]
    bands = [total[(freqs >= lo) & (freqs < hi)].sum() for lo, hi in zip(edges[:-1], edges[1:])]
    shares = 10 * np.log10(np.maximum(np.array(bands) / max(total.sum(), 1e-30), 1e-9))
    centroid = float((freqs * total).sum() / max(total.sum(), 1e-30))
    weights = power.sum(axis=0) / max(power.sum(), 1e-30)
    flat = np.exp(np.log(np.maximum(power, 1e-20)).mean(axis=0)) / np.maximum(power.mean(axis=0), 1e-20)
    flatness = 10 * np.log10(max(float((flat * weights).sum()), 1e-9))
    decay = np.log2(max(decay_seconds(wave, rate), 0.01))
    return np.concatenate([shares, [np.log2(max(centroid, 1.0) / 1000), flatness, decay]])


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two sets of descriptor rows."""
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    vals, vecs = np.linalg.eigh(cov_a)
    root_a = vecs @ np.diag(np.sqrt(np.maximum(vals, 0))) @ vecs.T
    middle = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.sqrt(np.maximum(middle, 0)).sum())
