"""The VAEs, their losses, their feature normalisation (`stats`) and length rules (`lengths`).

The networks import torch, so they load on first use (PEP 562): `lengths` and
`stats` are plain Python, and importing them does not load torch. What a
trained model is saved as is `sda_web.checkpoints`, below every layer.

`SoundVAE` is the model of whole sounds every new run trains; `ConvVAE` is the
segment model of earlier runs, kept so that they still load and generate."""
from __future__ import annotations

import importlib

_LAZY = {
    "ConvVAE": ".vae", "ModelShape": ".vae",
    "SoundShape": ".sound_vae", "SoundVAE": ".sound_vae",
    "VAELoss": ".losses", "sound_vae_loss": ".losses", "vae_loss": ".losses",
}

__all__ = [*_LAZY, "build_model"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_model(shape_dict: dict):
    """The shape a checkpoint records and an untrained model of it, (shape, model) (a shape
    without a kind is the segment model of earlier runs)."""
    # torch only when a model is built (PEP 562: `import sda_web.model` stays light)
    from .sound_vae import SoundShape, SoundVAE
    from .vae import ConvVAE, ModelShape

    if shape_dict.get("kind") == SoundShape.kind:
        shape = SoundShape.from_dict(shape_dict)
        return shape, SoundVAE(shape)
    shape = ModelShape.from_dict(shape_dict)
    return shape, ConvVAE(shape)
