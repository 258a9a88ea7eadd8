"""VAE losses: reconstruction + annealed KL with free bits.

Both parts are per element of the target, so their sum reads like an ELBO
with a Gaussian decoder whose variance the KL weight stands for. Free bits: a
latent dimension whose batch-mean KL is below `free_bits` nats is not pushed
further towards the prior, which keeps the posterior from collapsing.

`sound_vae_loss` (the whole-sound model): free bits guard the *global* latent
only, so the sound's identity always has room there; the local residual pays
for every nat it uses, so it carries only what the global latent and the time
since the onset cannot predict.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from .sound_vae import gaussian_kl


class VAELoss(NamedTuple):
    total: torch.Tensor  # what is minimised (annealed KL weight, free bits)
    recon: torch.Tensor  # mean squared error per element (+ the spectral term, for the whole-sound model)
    kl: torch.Tensor  # true KL per element (no free bits), for reporting


def vae_loss(recon: torch.Tensor, target: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
             kl_weight: float, free_bits: float) -> VAELoss:
    """The segment model's loss (models trained before whole sounds)."""
    elements = target[0].numel()
    rec = F.mse_loss(recon, target)
    kl_per_dim = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean(dim=0)
    kl_true = kl_per_dim.sum() / elements
    kl_guarded = kl_per_dim.clamp(min=free_bits).sum() / elements
    return VAELoss(rec + kl_weight * kl_guarded, rec, kl_true)


def spectral_convergence(recon: torch.Tensor, target: torch.Tensor, std: float) -> torch.Tensor:
    """Mean over the batch of ||M_r - M_t|| / ||M_t||, M the band *magnitudes* (linear): the loud
    cells (a tom's partials, a kick's body, an onset) weigh as they do in the sound, where a log
    distance lets a smeared peak lose its height. Normalised log power x is magnitude
    exp(x * std / 2) up to one factor per dataset, which the ratio cancels."""
    scale = std / 2
    # The larger of the two peaks keeps exp() <= 1, and the shift cancels in the ratio. With the
    # target's alone, one reconstructed cell 32 units above it overflowed float32 to inf: a run
    # started from a model went non-finite in its first steps (and likely the one run on a GPU).
    peak = torch.maximum(target.amax(dim=(1, 2), keepdim=True), recon.amax(dim=(1, 2), keepdim=True)).detach()
    mag_r, mag_t = torch.exp((recon - peak) * scale), torch.exp((target - peak) * scale)
    return ((mag_r - mag_t).flatten(1).norm(dim=1) / mag_t.flatten(1).norm(dim=1).clamp(min=1e-8)).mean()


def sound_vae_loss(recon: torch.Tensor, target: torch.Tensor, global_stats, local_stats, kl_weight: float,
                   free_bits: float, prior_recon: torch.Tensor | None = None, prior_weight: float = 0.0,
                   prior_target: torch.Tensor | None = None, spectral_weight: float = 0.0,
                   std: float = 1.0) -> VAELoss:
    """`prior_recon`: sounds decoded from the global latent alone (local detail at the prior's
    mean), against `prior_target` (default: `target`), weighed by `prior_weight` in the total: it
    is how a new sound is made, so it must sound like the material, not only the reconstruction.
    `spectral_weight`: of the linear-magnitude term (`std`: of the normalisation) in the
    reconstruction."""
    elements = target[0].numel()
    rec = F.mse_loss(recon, target)
    if spectral_weight > 0:
        rec = rec + spectral_weight * spectral_convergence(recon, target, std)
    kl_global = gaussian_kl(*global_stats).mean(dim=0)  # per dimension
    kl_local = gaussian_kl(*local_stats).sum(dim=(1, 2)).mean()
    kl_true = (kl_global.sum() + kl_local) / elements
    kl_guarded = (kl_global.clamp(min=free_bits).sum() + kl_local) / elements
    total = rec + kl_weight * kl_guarded
    if prior_recon is not None and prior_weight > 0:
        total = total + prior_weight * F.mse_loss(prior_recon, target if prior_target is None else prior_target)
    return VAELoss(total, rec, kl_true)


def attribute_loss(z: torch.Tensor, attributes: torch.Tensor, sharpness: float,
                   keep: torch.Tensor | None = None) -> torch.Tensor:
    """Attribute regularisation (Pati and Lerch, 2021): latent dimension k of every pair of sounds
    in the batch is pushed to be ordered as their attribute k is, mean over pairs of
    |tanh(sharpness * (z_ik - z_jk)) - sign(a_ik - a_jk)|. `z` (batch, k), `attributes` (batch, k);
    `keep` (batch,) bool: only pairs of kept rows count (a mask, not an index: no host sync)."""
    dz = z[:, None, :] - z[None, :, :]
    da = attributes[:, None, :] - attributes[None, :, :]
    error = (torch.tanh(sharpness * dz) - torch.sign(da)).abs()
    if keep is None:
        return error.mean()
    pairs = (keep[:, None] & keep[None, :]).to(error.dtype)[..., None]
    return (error * pairs).sum() / (pairs.sum() * z.shape[1]).clamp(min=1.0)
