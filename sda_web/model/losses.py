"""VAE loss: reconstruction + annealed KL with free bits.

Both parts are per element of the mel segment, so their sum reads like an
ELBO with a Gaussian decoder whose variance the KL weight stands for. Free
bits: a latent dimension whose batch-mean KL is below `free_bits` nats is not
pushed further towards the prior, which keeps the posterior from collapsing.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class VAELoss(NamedTuple):
    total: torch.Tensor  # what is minimised (annealed KL weight, free bits)
    recon: torch.Tensor  # mean squared error per element
    kl: torch.Tensor  # true KL per element (no free bits), for reporting


def vae_loss(recon: torch.Tensor, target: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
             kl_weight: float, free_bits: float) -> VAELoss:
    elements = target[0].numel()
    rec = F.mse_loss(recon, target)
    kl_per_dim = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean(dim=0)
    kl_true = kl_per_dim.sum() / elements
    kl_guarded = kl_per_dim.clamp(min=free_bits).sum() / elements
    return VAELoss(rec + kl_weight * kl_guarded, rec, kl_true)
