"""The VAEs and their losses. Imports torch: keep off the web server's start-up path.

`SoundVAE` is the model of whole sounds every new run trains; `ConvVAE` is the
segment model of earlier runs, kept so that they still load and generate."""
from .vae import ConvVAE, ModelShape
from .sound_vae import SoundShape, SoundVAE
from .losses import VAELoss, sound_vae_loss, vae_loss

__all__ = ["ConvVAE", "ModelShape", "SoundShape", "SoundVAE", "VAELoss", "build_model", "sound_vae_loss", "vae_loss"]


def build_model(shape_dict: dict) -> "tuple[SoundShape | ModelShape, SoundVAE | ConvVAE]":
    """The shape a checkpoint records and an untrained model of it (a shape without a kind is
    the segment model of earlier runs)."""
    if shape_dict.get("kind") == SoundShape.kind:
        shape = SoundShape.from_dict(shape_dict)
        return shape, SoundVAE(shape)
    shape = ModelShape.from_dict(shape_dict)
    return shape, ConvVAE(shape)
