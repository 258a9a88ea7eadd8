"""The VAE and its loss. Imports torch: keep off the web server's start-up path."""
from .vae import ConvVAE, ModelShape
from .losses import VAELoss, vae_loss

__all__ = ["ConvVAE", "ModelShape", "VAELoss", "vae_loss"]
