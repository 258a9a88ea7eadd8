"""A faster log-mel -> waveform inverse for generation: the same algorithm as
`audio.features.mel_to_waveform` (mel pseudo-inverse refined by non-negative
least squares, then fast Griffin-Lim with momentum from a zero phase), with
the CPU time taken out of the parts that dominated it.

Profiled on 10 s of audio, one thread, torchaudio's GriffinLim spent 24% of
its time in istft's overlap-add (a generic `unfold_backward`), 35% in complex
`abs`/`div` (hypot per element) and only 15% in the FFTs. Here:
- overlap-add is n_fft/hop slice additions of (frames, hop) blocks;
- the phase update uses |z|^2 from the real and imaginary planes and one rsqrt;
- the filterbank products of the NNLS refinement use its sparsity (every STFT
  bin lies under at most two mel triangles) instead of dense matmuls.
The result matches torchaudio's GriffinLim to float32 rounding (tested).
"""
from __future__ import annotations

import threading

import numpy as np
import torch

from ..audio.features import MelSpec, mel_to_power_spectrogram

NNLS_UPDATES = 30  # as audio.features.MEL_INVERSE_UPDATES
_MAX_LOG = 30.0  # as audio.features: exp() of a wild decoder value must stay finite

_cache: dict = {}
_lock = threading.Lock()


class _Filterbank:
    """The mel filterbank (n_stft, n_mels) as two (index, weight) pairs per STFT bin."""

    def __init__(self, spec: MelSpec, device: torch.device):
        import torchaudio.transforms as T

        fb = T.MelScale(n_mels=spec.n_mels, sample_rate=spec.sample_rate, f_min=spec.f_min, f_max=spec.f_max,
                        n_stft=spec.n_stft, norm="slaney", mel_scale="slaney").fb  # (n_stft, n_mels)
        nonzero = (fb > 0).sum(dim=1)
        self.sparse = bool(nonzero.max() <= 2)
        order = torch.argsort((fb > 0).float(), dim=1, descending=True, stable=True)[:, :2]
        self.dense = fb.to(device)
        self.idx = [order[:, j].contiguous().to(device) for j in range(2)]
        self.w = [fb.gather(1, order[:, j:j + 1]).contiguous().to(device) for j in range(2)]  # 0 where unused
        self.n_mels = spec.n_mels

    def to_linear(self, mel: torch.Tensor) -> torch.Tensor:
        """fb @ mel: (n_mels, T) -> (n_stft, T)."""
        if not self.sparse:
            return self.dense @ mel
        return self.w[0] * mel[self.idx[0]] + self.w[1] * mel[self.idx[1]]

    def to_mel(self, power: torch.Tensor) -> torch.Tensor:
        """fb^T @ power: (n_stft, T) -> (n_mels, T)."""
        if not self.sparse:
            return self.dense.T @ power
        out = torch.zeros(self.n_mels, power.shape[1], dtype=power.dtype, device=power.device)
        out.index_add_(0, self.idx[0], self.w[0] * power)
        out.index_add_(0, self.idx[1], self.w[1] * power)
        return out


def _filterbank(spec: MelSpec, device: torch.device) -> _Filterbank:
    with _lock:
        key = ("fb", spec, str(device))
        fb = _cache.get(key)
        if fb is None:
            fb = _cache[key] = _Filterbank(spec, device)
        return fb


def mel_to_power(mel: torch.Tensor, spec: MelSpec, updates: int = NNLS_UPDATES) -> torch.Tensor:
    """Mel power (n_mels, T) -> non-negative linear power (n_stft, T): the pseudo-inverse,
    then multiplicative NNLS updates (as audio.features.mel_to_power_spectrogram)."""
    fb = _filterbank(spec, mel.device)
    if not fb.sparse or mel.dim() != 2:
        return mel_to_power_spectrogram(mel, spec, updates)
    start = mel_to_power_spectrogram(mel, spec, 0)  # pinv, clipped, plus the same tiny floor
    tiny = torch.finfo(mel.dtype).tiny
    target = fb.to_linear(mel)
    power = start
    for _ in range(updates):
        power = power * target / (fb.to_linear(fb.to_mel(power)) + tiny)
    return power


def griffin_lim(power: torch.Tensor, spec: MelSpec, n_iter: int, momentum: float | None = None) -> torch.Tensor:
    """Linear power (n_stft, frames) -> waveform ((frames - 1) * hop,), zero initial phase."""
    n_fft, hop = spec.n_fft, spec.hop_length
    momentum = spec.griffin_lim_momentum if momentum is None else momentum
    if n_fft % hop or power.dim() != 2:
        return _torchaudio_griffin_lim(power, spec, n_iter, momentum)
    beta = momentum / (1 + momentum)
    magnitude = power.sqrt().T.contiguous()  # (frames, n_stft): FFTs along the contiguous axis
    frames = magnitude.shape[0]
    window = torch.hann_window(n_fft, dtype=power.dtype, device=power.device)
    pad, ratio = n_fft // 2, n_fft // hop
    length = (frames - 1) * hop
    inv_envelope = 1.0 / _overlap_add((window * window).expand(frames, n_fft), ratio, hop).clamp(min=1e-11)

    def inverse(spectrum: torch.Tensor) -> torch.Tensor:
        segments = torch.fft.irfft(spectrum, n=n_fft, dim=-1) * window
        return (_overlap_add(segments, ratio, hop) * inv_envelope)[pad:pad + length]

    def forward(wave: torch.Tensor) -> torch.Tensor:
        padded = torch.nn.functional.pad(wave.view(1, 1, -1), (pad, pad), mode="reflect").view(-1)
        return torch.fft.rfft(padded.unfold(0, n_fft, hop) * window, dim=-1)

    # The phase update runs on float views of the complex spectra: complex
    # elementwise ops cost 3-5x more per element on the CPU.
    spectrum = magnitude.to(torch.complex64 if power.dtype == torch.float32 else torch.complex128)
    previous = None
    for _ in range(n_iter):
        rebuilt = torch.view_as_real(forward(inverse(spectrum)))  # (frames, n_stft, 2)
        angles = rebuilt if previous is None else torch.add(rebuilt, previous, alpha=-beta)
        previous = rebuilt
        norm = angles[..., 0].square().add_(angles[..., 1].square()).sqrt_().add_(1e-16)
        spectrum = torch.view_as_complex(angles * (magnitude / norm).unsqueeze(-1))
    return inverse(spectrum)


def _overlap_add(segments: torch.Tensor, ratio: int, hop: int) -> torch.Tensor:
    """(frames, ratio * hop) windowed segments -> ((frames + ratio - 1) * hop,) summed at `hop` spacing."""
    frames = segments.shape[0]
    blocks = segments.reshape(frames, ratio, hop)
    out = torch.zeros(frames + ratio - 1, hop, dtype=segments.dtype, device=segments.device)
    for q in range(ratio):
        out[q:q + frames] += blocks[:, q]
    return out.reshape(-1)


def _torchaudio_griffin_lim(power, spec, n_iter, momentum):
    import torchaudio.functional as AF

    window = torch.hann_window(spec.n_fft, dtype=power.dtype, device=power.device)
    return AF.griffinlim(power, window, spec.n_fft, spec.hop_length, spec.n_fft, 2.0, n_iter, momentum, None, False)


@torch.no_grad()
def log_mel_to_wave(log_mel: torch.Tensor, spec: MelSpec, n_iter: int,
                    nnls_updates: int = NNLS_UPDATES) -> torch.Tensor:
    """log-mel (n_mels, frames) -> waveform ((frames - 1) * hop,), on the log-mel's device."""
    log_mel = torch.as_tensor(log_mel, dtype=torch.float32)
    mel = torch.exp(torch.nan_to_num(log_mel, nan=float(np.log(spec.log_floor))).clamp(max=_MAX_LOG))
    return griffin_lim(mel_to_power(mel, spec, nnls_updates), spec, n_iter)
