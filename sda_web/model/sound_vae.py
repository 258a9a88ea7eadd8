"""A VAE of whole sounds: a global latent for what a sound is, a local one for how it unfolds.

Input and output are normalised band log features shaped (batch, n_bands,
frames), any length that is a multiple of STRIDE (4 frames, about 46 ms):
the network is convolutional along time, so a 0.2-s cowbell and a 7-s ride
go through the same weights, whole, with no segments to stitch.

- Global latent `z` (latent_dim numbers per sound): pooled from the encoder's
  features over the *head* of the sound (its first `frames` frames, masked to
  its length). This is the space the sound controls, variations, blends and
  "the average of your sounds" work in.
- Local latent (local_dim numbers every STRIDE frames), written as a
  standardised residual `u` about a prior that the global latent and the time
  since the sound began predict: z_local = mu_p(z, t) + sigma_p(z, t) * u. Its
  KL is KL(q(u|x) || N(0, 1)), which equals the KL of z_local against that
  conditional prior. Generation draws `u` (or takes 0, the prior's mean), so
  a drawn sound starts with one onset at t = 0 and decays as the material
  does; a transform keeps the source's `u` and moves `z`, so the controls
  move the whole sound.
- Time since the sound began enters as exp(-t / tau) for a few time constants:
  they tell an onset from a tail, and saturate to 0 for long sounds, so a
  drone decoded for a minute is as steady at 50 s as at 5 s.
- Upsampling is nearest-neighbour then a convolution, never a transposed
  convolution (which leaves periodic "checkerboard" stripes: Odena, Dumoulin
  and Olah, 2016); residual blocks with dilation for context.

Every layer is built in __init__, before any optimizer sees the parameters.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from .lengths import STRIDE

TIME_CONSTANTS_S = (0.01, 0.04, 0.15, 0.5, 1.5, 4.5)
# Descriptors the first global latent dimensions are trained to keep in order (Pati and Lerch's
# attribute regularisation), in this order: dimension 0 is brightness, 1 loudness, ...
ATTRIBUTES = ("brightness", "loudness", "decay", "pitch")
LOGVAR_RANGE = (-12.0, 8.0)
PRIOR_LOGVAR_RANGE = (-8.0, 2.0)


@dataclass(frozen=True)
class SoundShape:
    n_bands: int
    frames: int  # the head the global encoder sees, and the longest training window
    latent_dim: int  # global
    local_dim: int
    width: int  # channels at half rate; a quarter rate uses 3/2 of it
    dropout: float
    frame_seconds: float  # hop / sample rate: turns frame indices into time since onset
    attribute_dims: tuple[str, ...] = ()  # ATTRIBUTES the first dimensions were trained to follow (none before)

    kind = "sound"

    def to_dict(self) -> dict:
        return {"kind": self.kind, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "SoundShape":
        fields = {k: v for k, v in data.items() if k != "kind"}
        fields["attribute_dims"] = tuple(fields.get("attribute_dims", ()))
        return cls(**fields)


class TrainingPass(NamedTuple):
    recon: torch.Tensor
    global_stats: tuple[torch.Tensor, torch.Tensor]  # (mu, logvar) of the global latent
    local_stats: tuple[torch.Tensor, torch.Tensor]  # (mu, logvar) of the local residual u
    prior_starts: torch.Tensor | None  # which windows (those that start their sound) prior_recon holds
    prior_recon: torch.Tensor | None  # those windows decoded from the global latent alone


def time_features(offsets: torch.Tensor, length: int, frame_seconds: float) -> torch.Tensor:
    """(batch,) start frames -> (batch, len(TIME_CONSTANTS_S), length // STRIDE): exp(-t / tau)
    at the centre of each local-latent step."""
    steps = torch.arange(length // STRIDE, device=offsets.device, dtype=torch.float32)
    frames = offsets.float()[:, None] + steps[None, :] * STRIDE + (STRIDE - 1) / 2
    t = frames * frame_seconds
    taus = torch.tensor(TIME_CONSTANTS_S, device=offsets.device)
    return torch.exp(-t[:, None, :] / taus[None, :, None])


class ResBlock(nn.Module):
    def __init__(self, channels: int, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(F.leaky_relu(x, 0.2)), 0.2))


def refine_time(time: torch.Tensor, factor: int, frame_seconds: float) -> torch.Tensor:
    """Time features at local-latent steps (batch, n_time, steps) -> the same at `factor` points a
    step (batch, n_time, steps * factor), each at its own centre: exp(-(t + d) / tau) is
    exp(-t / tau) * exp(-d / tau)."""
    span = STRIDE / factor  # frames a point covers
    centres = torch.arange(factor, device=time.device, dtype=time.dtype) * span + (span - 1) / 2
    delta = (centres - (STRIDE - 1) / 2) * frame_seconds  # seconds from the step's centre
    taus = torch.tensor(TIME_CONSTANTS_S, device=time.device, dtype=time.dtype)
    scale = torch.exp(-delta[None, :] / taus[:, None])  # (n_time, factor)
    fine = time[..., None] * scale[None, :, None, :]  # (batch, n_time, steps, factor)
    return fine.flatten(2)


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3-tap convolution that also sees the time since the onset at
    the new rate (so the first frames of an onset can differ from the rest of their step): no
    checkerboard, sharp attacks."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv1d(c_in + len(TIME_CONSTANTS_S), c_out, 3, padding=1)

    def forward(self, x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([F.interpolate(x, scale_factor=2, mode="nearest"), time], dim=1))


class SoundVAE(nn.Module):
    def __init__(self, shape: SoundShape):
        super().__init__()
        if shape.frames % STRIDE:
            raise ValueError(f"The head length must be a multiple of {STRIDE} frames, got {shape.frames}.")
        self.shape = shape
        w1, w2 = shape.width, (3 * shape.width) // 2
        n_time = len(TIME_CONSTANTS_S)
        act = nn.LeakyReLU(0.2)
        self.encoder = nn.Sequential(
            nn.Conv1d(shape.n_bands, w1, 4, stride=2, padding=1), act, ResBlock(w1),
            nn.Conv1d(w1, w2, 4, stride=2, padding=1), act, ResBlock(w2), ResBlock(w2, 2),
        )
        self.to_local = nn.Conv1d(w2, 2 * shape.local_dim, 1)
        self.to_global = nn.Sequential(nn.Dropout(shape.dropout), nn.Linear(2 * w2, 2 * shape.latent_dim))
        self.prior_in = nn.Conv1d(n_time, w2, 1)
        self.prior_global = nn.Linear(shape.latent_dim, w2)
        self.prior = nn.Sequential(act, ResBlock(w2), ResBlock(w2, 2), ResBlock(w2, 4), act,
                                   nn.Conv1d(w2, 2 * shape.local_dim, 1))
        self.decoder_in = nn.Conv1d(shape.local_dim + n_time, w2, 3, padding=1)
        self.decoder_global = nn.Linear(shape.latent_dim, w2)
        self.decoder_quarter = nn.Sequential(act, ResBlock(w2), ResBlock(w2, 2), ResBlock(w2, 4),
                                             nn.Dropout(shape.dropout))
        self.up_half = Upsample(w2, w1)
        self.decoder_half = nn.Sequential(act, ResBlock(w1), ResBlock(w1, 2))
        self.up_full = Upsample(w1, w1)
        self.decoder_out = nn.Sequential(act, nn.Conv1d(w1, shape.n_bands, 3, padding=1))

    # -- encoding -------------------------------------------------------------

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def global_stats(self, head_features: torch.Tensor, head_steps: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder features of heads (batch, w2, steps) -> global (mu, logvar), pooled over each
        head's first `head_steps` steps (all of them if None)."""
        steps = head_features.shape[-1]
        if head_steps is None:
            mask = torch.ones(head_features.shape[0], 1, steps, device=head_features.device)
        else:
            mask = (torch.arange(steps, device=head_features.device)[None, :] < head_steps[:, None]).float()[:, None]
        count = mask.sum(dim=-1).clamp(min=1.0)
        mean = (head_features * mask).sum(dim=-1) / count
        peak = head_features.masked_fill(mask == 0, -1e4).amax(dim=-1)
        mu, logvar = self.to_global(torch.cat([mean, peak], dim=1)).chunk(2, dim=1)
        return mu, logvar.clamp(*LOGVAR_RANGE)

    def local_stats(self, window_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.to_local(window_features).chunk(2, dim=1)
        return mu, logvar.clamp(*LOGVAR_RANGE)

    def encode(self, x: torch.Tensor, head_steps: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Whole sounds from their start (batch, n_bands, frames) -> (mu, logvar) of the global
        latent (from the first `shape.frames` frames) and of the local residual u."""
        h = self.features(x)
        head_len = self.shape.frames // STRIDE
        mu_g, logvar_g = self.global_stats(h[..., :head_len], head_steps)
        mu_u, logvar_u = self.local_stats(h)
        return mu_g, logvar_g, mu_u, logvar_u

    # -- prior and decoding ---------------------------------------------------

    def local_prior(self, z: torch.Tensor, time: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Global latents, (batch, latent) or a path (batch, latent, steps), and time features
        (batch, n_time, steps) -> (mean, log variance) of the local latent, (batch, local_dim, steps)."""
        g = self.prior_global(_as_path(z, time.shape[-1]).transpose(1, 2)).transpose(1, 2)
        mean, logvar = self.prior(self.prior_in(time) + g).chunk(2, dim=1)
        return mean, logvar.clamp(*PRIOR_LOGVAR_RANGE)

    def decode(self, z: torch.Tensor, u: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        """Global latent (batch, latent) or path (batch, latent, steps), local residual u
        (batch, local_dim, steps) and time features -> (batch, n_bands, steps * STRIDE)."""
        mean, logvar = self.local_prior(z, time)
        return self.decode_local(z, mean + torch.exp(0.5 * logvar) * u, time)

    def decode_local(self, z: torch.Tensor, local: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        """`decode` given the local latent itself (batch, local_dim, steps), not its residual."""
        g = self.decoder_global(_as_path(z, time.shape[-1]).transpose(1, 2)).transpose(1, 2)
        h = self.decoder_quarter(self.decoder_in(torch.cat([local, time], dim=1)) + g)
        h = self.decoder_half(self.up_half(h, refine_time(time, 2, self.shape.frame_seconds)))
        return self.decoder_out(self.up_full(h, refine_time(time, 4, self.shape.frame_seconds)))

    def time(self, batch: int, length: int, offsets: torch.Tensor | None = None, device=None) -> torch.Tensor:
        device = device if device is not None else next(self.parameters()).device
        offsets = torch.zeros(batch, device=device) if offsets is None else offsets.to(device)
        return time_features(offsets, length, self.shape.frame_seconds)

    def forward(self, x: torch.Tensor, offsets: torch.Tensor, head_steps: torch.Tensor,
                heads: torch.Tensor | None = None, head_index: torch.Tensor | None = None,
                with_prior_decode: bool = False) -> TrainingPass:
        """Training pass over windows `x` that start `offsets` frames into their sounds. The global
        latent comes from each sound's head: the window itself where it starts at 0, else `heads`
        (the sounds' first frames) for the windows at `head_index`.
        With `with_prior_decode`, the windows that start their sound are also decoded from the
        global latent alone (local detail at the prior's mean)."""
        h = self.features(x)
        head_len = min(self.shape.frames, x.shape[-1]) // STRIDE
        mu_g, logvar_g = self.global_stats(h[..., :head_len], head_steps)
        if heads is not None:  # without gradients: the encoder learns from the windows that start at 0
            with torch.no_grad():
                head_mu, head_logvar = self.global_stats(self.features(heads), head_steps[head_index])
            mu_g = mu_g.index_copy(0, head_index, head_mu)
            logvar_g = logvar_g.index_copy(0, head_index, head_logvar)
        mu_u, logvar_u = self.local_stats(h)
        if self.training:
            z = mu_g + torch.randn_like(mu_g) * torch.exp(0.5 * logvar_g)
            u = mu_u + torch.randn_like(mu_u) * torch.exp(0.5 * logvar_u)
        else:
            z, u = mu_g, mu_u
        time = self.time(x.shape[0], x.shape[-1], offsets, x.device)
        mean, logvar = self.local_prior(z, time)
        local = mean + torch.exp(0.5 * logvar) * u
        starts = prior_recon = None
        if with_prior_decode:  # how a new sound is made; windows inside long sounds skip it (half the cost there)
            starts = torch.nonzero(offsets == 0).flatten()
        if starts is None or not len(starts):
            recon = self.decode_local(z, local, time)
        else:  # u = 0 is the prior's mean: one prior pass serves both, and one decoder pass decodes both
            both = self.decode_local(torch.cat([z, z[starts]]), torch.cat([local, mean[starts]]),
                                     torch.cat([time, time[starts]]))
            recon, prior_recon = both[:len(x)], both[len(x):]
        return TrainingPass(recon, (mu_g, logvar_g), (mu_u, logvar_u), starts, prior_recon)


def _as_path(z: torch.Tensor, steps: int) -> torch.Tensor:
    """(batch, latent) -> (batch, latent, steps); a path (batch, latent, steps) as it is."""
    return z[:, :, None].expand(-1, -1, steps) if z.dim() == 2 else z


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise KL(N(mu, exp(logvar)) || N(0, 1))."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)
