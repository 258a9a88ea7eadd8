"""The model's features: log power of a full-band STFT in bands, and the way
back to a linear power spectrogram. The waveform inverse is `audio.inverse`.

`BandSpec` (every new model): a 2048-point STFT (hop 512, Hann, centred) at
44.1 or 48 kHz, its log power averaged over bands one bin wide up to bin
`linear_bins` (1.4-1.5 kHz) and then doubling in width every octave, 32 bands
per octave up to Nyquist: 192 bands. Back to bins by linear interpolation of
the bands' log power between their centres. Averaging *log* power (a
geometric mean) rather than power is what keeps the ceiling low: measured on
real drum kits, true bands -> waveform is 3.3 dB (Millo) / 1.2 dB (Forzee)
log-spectral distance at full band, where 256 mel bands (power averaged)
reached only 7.7 dB and the old 24 kHz, 80-mel features 8.8 dB
(docs/DESIGN-NOTES.md has the table).

`MelSpec` (models trained before full band): 24 kHz, 80 Slaney mel bands up to
12 kHz, log of mel power; back to bins by the filterbank's pseudo-inverse
refined by non-negative least squares. Kept so those models still generate.

Every spec travels inside its checkpoint (`spec.to_dict()` / `spec_from_dict`).
"""
from __future__ import annotations

import threading
from collections import Counter
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

MODEL_RATES = (44_100, 48_000)


def _from_dict(cls, data: dict):
    """A spec from a dict: unknown keys ignored, missing ones default."""
    kinds = {f.name: f.type for f in fields(cls)}
    values = {}
    for key, value in data.items():
        if key in kinds:
            values[key] = int(value) if kinds[key] in (int, "int") else float(value)
    return cls(**values)


class _SpecShared:
    """What every feature spec has: its dict form (with its kind), STFT bins, frame counts."""
    kind = ""

    def to_dict(self) -> dict:
        return {"kind": self.kind, **asdict(self)}

    @property
    def n_stft(self) -> int:
        return self.n_fft // 2 + 1

    def frames_for(self, seconds: float) -> int:
        """Number of spectrogram frames for `seconds` of audio (centred frames)."""
        return int(round(seconds * self.sample_rate)) // self.hop_length + 1


@dataclass(frozen=True)
class BandSpec(_SpecShared):
    sample_rate: int = 48_000
    n_fft: int = 2048
    hop_length: int = 512
    linear_bins: int = 64  # bands one bin wide below this bin; then 32 bands per octave
    log_floor: float = 1e-12  # -120 dB re a full-scale sine: soft layers of real kits peak near -25 dBFS
    # 32 iterations of fast Griffin-Lim from a zero phase: on real drum kits the ceiling is
    # 3.34 dB at 16 and 3.25 dB at 32 (Millo); previews keep 32, generation uses 24.
    griffin_lim_iters: int = 32
    griffin_lim_momentum: float = 0.99

    kind = "bands"

    @property
    def n_bands(self) -> int:
        return len(band_edges(self)) - 1


@dataclass(frozen=True)
class MelSpec(_SpecShared):
    """The features of models trained before full band (see the module docstring)."""
    sample_rate: int = 24000
    n_fft: int = 1024
    hop_length: int = 256
    n_mels: int = 80
    f_min: float = 20.0
    f_max: float = 12000.0
    log_floor: float = 1e-5
    griffin_lim_iters: int = 32
    griffin_lim_momentum: float = 0.99

    kind = "mel"

    @property
    def n_bands(self) -> int:
        return self.n_mels


FeatureSpec = BandSpec | MelSpec


def spec_from_dict(data: dict) -> FeatureSpec:
    """The spec a checkpoint or features.json recorded; one without a kind is a mel spec (older runs)."""
    return _from_dict(BandSpec if data.get("kind") == "bands" else MelSpec, data)


def checkpoint_spec(payload: dict) -> FeatureSpec:
    """The feature spec stored in a checkpoint payload (new key first, then the pre-full-band one)."""
    return spec_from_dict(payload.get("feature_spec") or payload["mel_spec"])


def choose_model_rate(rates) -> int:
    """The rate a model of files at `rates` works at: 44.1 kHz when most files are of the 44.1 kHz
    family (11.025/22.05/44.1/88.2 kHz...), else 48 kHz. Any file is resampled to it."""
    families = Counter(44_100 if int(rate) % 11_025 == 0 else 48_000 for rate in rates)
    if not families:
        return 48_000
    return 44_100 if families[44_100] > families[48_000] else 48_000


def default_spec(rates=()) -> BandSpec:
    return BandSpec(sample_rate=choose_model_rate(rates))


# -- band layout ----------------------------------------------------------------

def band_edges(spec: BandSpec) -> list[int]:
    """STFT bin edges of the bands: width 1 below `linear_bins`, doubling every octave after;
    the Nyquist bin joins the last band."""
    edges, width, octave_end = [0], 1, spec.linear_bins
    last = spec.n_stft - 1
    while edges[-1] < last:
        if edges[-1] >= octave_end:
            width, octave_end = width * 2, octave_end * 2
        edges.append(min(last, edges[-1] + width))
    edges[-1] = spec.n_stft
    return edges


_cache: dict = {}
_cache_lock = threading.RLock()


def _cached(key, build):
    with _cache_lock:
        obj = _cache.get(key)
        if obj is None:
            obj = _cache[key] = build()
        return obj


# A band holds the mean *log* power of its bins: for noise (exponentially distributed bin
# powers) that sits Euler's gamma below the log of their mean power, so a cymbal's true bands
# came back with half its energy above 12 kHz. Bins of a w-bin band get half of that back,
# exp(gamma / 2 * (1 - 1/w)). Measured on real kits (true bands -> waveform), top-octave energy
# kept / ceiling LSD: no correction 0.54 / 3.13 dB (Millo), 0.45 / 1.44 dB (Forzee); half 0.75 /
# 3.13, 0.59 / 1.43; full 0.98 / 3.25, 0.77 / 1.45, but trained models then overshot the top
# octave 2.3x and a default Millo model's VAE distance rose from 5.96 to 6.06 dB.
EULER_GAMMA = 0.5772156649
NOISE_CORRECTION = 0.5


def _band_matrices(spec: BandSpec, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(average, interpolate, log_correction): (n_bands, n_stft) means over each band's bins,
    (n_stft, n_bands) linear interpolation between band centres (flat beyond the outer ones),
    and the (n_stft, 1) log-power correction of each bin for its band's averaging."""
    def build():
        edges = band_edges(spec)
        n = len(edges) - 1
        average = np.zeros((n, spec.n_stft))
        for i in range(n):
            average[i, edges[i]:edges[i + 1]] = 1.0 / (edges[i + 1] - edges[i])
        centres = np.array([(edges[i] + edges[i + 1] - 1) / 2 for i in range(n)])
        bins = np.arange(spec.n_stft)
        upper = np.clip(np.searchsorted(centres, bins), 1, n - 1)
        u = np.clip((bins - centres[upper - 1]) / (centres[upper] - centres[upper - 1]), 0.0, 1.0)
        interpolate = np.zeros((spec.n_stft, n))
        interpolate[bins, upper - 1] = 1 - u
        interpolate[bins, upper] += u
        widths = np.repeat(np.diff(edges), np.diff(edges)).astype(np.float64)
        log_correction = NOISE_CORRECTION * EULER_GAMMA * (1.0 - 1.0 / widths)[:, None]
        return tuple(torch.tensor(m, dtype=torch.float32, device=device)
                     for m in (average, interpolate, log_correction))

    return _cached(("bands", spec, str(device)), build)


def band_centres_hz(spec: FeatureSpec) -> torch.Tensor:
    """Centre frequency (Hz, float64) of every band."""
    if isinstance(spec, MelSpec):
        return _mel_band_shares(spec)[0]
    edges = band_edges(spec)
    return torch.tensor([(edges[i] + edges[i + 1] - 1) / 2 * spec.sample_rate / spec.n_fft
                         for i in range(len(edges) - 1)], dtype=torch.float64)


def band_energy(log_features: torch.Tensor, spec: FeatureSpec) -> torch.Tensor:
    """[..., n_bands, frames] log features -> each band's share of the frame's STFT power (float64),
    in units where a full-scale sine's frame sums to 1.5 (the Hann window's mainlobe)."""
    density = log_features.double().exp()
    if isinstance(spec, MelSpec):
        weights = _mel_band_shares(spec)[1]
        # unnormalised STFT power; a Hann frame of rms r sums to 3 N^2 r^2 / 16 one-sided
        return density * weights[:, None] * (16.0 / spec.n_fft ** 2)
    edges = band_edges(spec)
    widths = torch.tensor([edges[i + 1] - edges[i] for i in range(len(edges) - 1)], dtype=torch.float64)
    return density * widths[:, None]


# Frame power of a signal of rms r, in band_energy's units: 3 r^2 (one-sided Hann, normalised).
ENERGY_PER_MEAN_SQUARE = 3.0


# -- analysis -------------------------------------------------------------------

def _pad_to_one_frame(wave, n_fft: int) -> torch.Tensor:
    wave = torch.as_tensor(wave, dtype=torch.float32) if not torch.is_tensor(wave) else wave.float()
    if wave.shape[-1] < n_fft:  # reflect padding needs more samples than half a frame
        wave = torch.nn.functional.pad(wave, (0, n_fft - wave.shape[-1]))
    return wave


def power_spectrogram(wave: torch.Tensor, spec: BandSpec) -> torch.Tensor:
    """wave [..., T] -> STFT power [..., n_stft, frames], scaled so a full-scale sine peaks near 1."""
    window = _cached(("hann", spec.n_fft, str(wave.device)), lambda: torch.hann_window(spec.n_fft, device=wave.device))
    shape = wave.shape
    stft = torch.stft(wave.reshape(-1, shape[-1]), spec.n_fft, spec.hop_length, window=window, center=True,
                      pad_mode="reflect", return_complex=True)
    power = (stft.real.square() + stft.imag.square()) / _power_scale(spec)
    return power.reshape(*shape[:-1], *power.shape[-2:])


def _power_scale(spec: BandSpec) -> float:
    """|STFT|^2 of a full-scale sine at a bin centre: (sum of the Hann window / 2)^2."""
    return (0.5 * float(torch.hann_window(spec.n_fft, dtype=torch.float64).sum())) ** 2


def log_features(wave, spec: FeatureSpec) -> torch.Tensor:
    """wave [..., T] (tensor or array) at spec.sample_rate -> log features [..., n_bands, frames]."""
    wave = _pad_to_one_frame(wave, spec.n_fft)
    if isinstance(spec, MelSpec):
        mel = _mel_transform(spec, wave.device)(wave)
        return torch.log(torch.clamp(mel, min=spec.log_floor))
    average = _band_matrices(spec, wave.device)[0]
    log_power = torch.log(power_spectrogram(wave, spec).clamp(min=spec.log_floor))
    return torch.matmul(average, log_power)


# exp() of a wild decoder output would give inf and then NaN audio; e^30 is far above any real
# band energy (a full-scale sine is about e^0 in bands, e^9 in the old mel features).
MAX_LOG = 30.0


def features_to_power(log_feats: torch.Tensor, spec: FeatureSpec) -> torch.Tensor:
    """Log features [..., n_bands, frames] -> non-negative linear STFT power [..., n_stft, frames]
    (unnormalised |STFT|^2, what the inverse STFT expects)."""
    floor = float(np.log(spec.log_floor))
    log_feats = torch.nan_to_num(torch.as_tensor(log_feats, dtype=torch.float32), nan=floor).clamp(max=MAX_LOG)
    if isinstance(spec, MelSpec):
        return _mel_to_power(torch.exp(log_feats), spec)
    _, interpolate, log_correction = _band_matrices(spec, log_feats.device)
    return torch.exp(torch.matmul(interpolate, log_feats) + log_correction) * _power_scale(spec)


# -- the pre-full-band mel features ---------------------------------------------

def _mel_transform(spec: MelSpec, device: torch.device):
    import torchaudio.transforms as T

    def build():
        return T.MelSpectrogram(
            sample_rate=spec.sample_rate, n_fft=spec.n_fft, hop_length=spec.hop_length,
            f_min=spec.f_min, f_max=spec.f_max, n_mels=spec.n_mels,
            power=2.0, center=True, pad_mode="reflect", norm="slaney", mel_scale="slaney",
        ).to(device)

    return _cached(("mel", spec, str(device)), build)


def _mel_filterbank(spec: MelSpec, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(pinv, fb): the (n_stft, n_mels) pseudo-inverse of the mel filterbank and the filterbank."""
    def build():
        fb = _mel_transform(spec, torch.device("cpu")).mel_scale.fb  # (n_stft, n_mels)
        pinv = torch.linalg.pinv(fb.T.double()).float()
        return pinv.to(device), fb.clone().to(device)

    return _cached(("mel-inverse", spec, str(device)), build)


def _mel_band_shares(spec: MelSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """(centre Hz, energy weight) of every mel band: with Slaney (area) normalisation a band's value
    is a power density; times its weight (1 / the triangle's peak) it is the band's share of power."""
    def build():
        fb = _mel_filterbank(spec, torch.device("cpu"))[1].double()
        freqs = torch.linspace(0, spec.sample_rate / 2, spec.n_stft, dtype=torch.float64)
        area = fb.sum(dim=0).clamp(min=1e-12)
        return (fb * freqs[:, None]).sum(dim=0) / area, 1.0 / fb.amax(dim=0).clamp(min=1e-12)

    return _cached(("mel-shares", spec), build)


# The pseudo-inverse is the minimum-norm solution: it rings negative around tonal peaks, and
# clipping those at zero costs 5.4 dB of mel-domain LSD. 30 multiplicative non-negative
# least-squares updates from it bring that to 1.6 dB.
MEL_INVERSE_UPDATES = 30


def _mel_to_power(mel: torch.Tensor, spec: MelSpec, updates: int = MEL_INVERSE_UPDATES) -> torch.Tensor:
    pinv, fb = _mel_filterbank(spec, mel.device)
    fb_t = fb.transpose(0, 1)
    tiny = torch.finfo(mel.dtype).tiny
    power = torch.relu(torch.matmul(pinv, mel)) + 1e-10 * mel.amax(dim=(-2, -1), keepdim=True)
    target = torch.matmul(fb, mel)
    for _ in range(updates):
        power = power * target / (torch.matmul(fb, torch.matmul(fb_t, power)) + tiny)
    return power
