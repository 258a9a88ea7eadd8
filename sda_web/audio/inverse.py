"""The one waveform inverse: log features -> linear power -> fast Griffin-Lim.

Previews, generation, transform and the benches all call `features_to_wave`
(or `griffin_lim` on a power spectrogram they built with `features_to_power`).

Fast Griffin-Lim (Perraudin, Balazs and Søndergaard, "A fast Griffin-Lim
algorithm", 2013): momentum 0.99 from a zero initial phase, so the same input
gives the same samples. The CPU time is taken out of the parts that dominate a
generic implementation (profiled on 10 s of audio, one thread: torchaudio's
GriffinLim spent 24% in istft's overlap-add, 35% in complex abs/div, 15% in
the FFTs):
- overlap-add is n_fft/hop slice additions of (frames, hop) blocks;
- the phase update uses |z|^2 from the real and imaginary planes and one sqrt.

A batch is inverted item by item, each item copied to its own allocation: it
goes through exactly the same operations, on the same shapes and alignment, as
it would alone, so a sound never depends on what it was batched with (batched
matmuls and FFTs take other code paths, e.g. on AVX-512, and momentum turns
their last-bit differences in near-silent bins into audible ones).
"""
from __future__ import annotations

import torch

from .features import FeatureSpec, features_to_power


@torch.no_grad()
def features_to_wave(log_feats: torch.Tensor, spec: FeatureSpec, n_iter: int | None = None) -> torch.Tensor:
    """Log features [..., n_bands, frames] -> waveform [..., (frames - 1) * hop_length], on their device.

    Deterministic (zero initial phase). Not clipped: the caller normalises."""
    iters = spec.griffin_lim_iters if n_iter is None else int(n_iter)
    log_feats = torch.as_tensor(log_feats, dtype=torch.float32)
    if log_feats.dim() == 2:
        return griffin_lim(features_to_power(log_feats, spec), spec, iters)
    flat = log_feats.reshape(-1, *log_feats.shape[-2:])
    waves = [griffin_lim(features_to_power(item.clone(), spec), spec, iters) for item in flat]
    return torch.stack(waves).reshape(*log_feats.shape[:-2], -1)


@torch.no_grad()
def griffin_lim(power: torch.Tensor, spec: FeatureSpec, n_iter: int, momentum: float | None = None) -> torch.Tensor:
    """Linear power [..., n_stft, frames] -> waveform [..., (frames - 1) * hop], zero initial phase."""
    momentum = spec.griffin_lim_momentum if momentum is None else momentum
    if power.dim() == 2:
        return _griffin_lim_one(power, spec.n_fft, spec.hop_length, n_iter, momentum)
    flat = power.reshape(-1, *power.shape[-2:])
    waves = [_griffin_lim_one(item.clone(), spec.n_fft, spec.hop_length, n_iter, momentum) for item in flat]
    return torch.stack(waves).reshape(*power.shape[:-2], -1)


def _griffin_lim_one(power: torch.Tensor, n_fft: int, hop: int, n_iter: int, momentum: float) -> torch.Tensor:
    if n_fft % hop:
        raise ValueError(f"The hop ({hop}) must divide the FFT size ({n_fft}).")
    beta = momentum / (1 + momentum)
    magnitude = power.clamp(min=0).sqrt().T.contiguous()  # (frames, n_stft): FFTs along the contiguous axis
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
