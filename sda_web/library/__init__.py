"""The library: trained models and generated sounds on disk.

Importing it does not import torch; making sounds does, when called.
"""
from .models import (
    ImportRefused, ModelBusy, ModelError, ModelInfo, UnknownModel, delete_model, list_models, load_model, rename_model,
    resolve_model,
)
from .transfer import export_file_name, export_model, import_model
from .errors import SoundError, UnknownSound
from .loaded import loaded_model
from .packs import download_name, sample_pack, sound_file_name
from .sounds import (
    Rendered, Sound, SoundRequest, delete_sound, export_sound, generate_sounds, list_sounds, load_sound, regenerate,
    render, sound_waveform, transform_file, validate_request,
)
from .sources import Source, SourceError, UnknownSource, keep_dataset_file, keep_source, list_sources, load_source

__all__ = [
    "ImportRefused", "ModelBusy", "ModelError", "ModelInfo", "UnknownModel", "delete_model", "export_file_name",
    "export_model", "import_model", "list_models", "load_model", "rename_model", "resolve_model",
    "Rendered", "Sound", "SoundError", "SoundRequest", "UnknownSound", "delete_sound", "download_name", "export_sound",
    "generate_sounds", "list_sounds", "load_sound", "regenerate", "render", "sample_pack", "sound_file_name", "transform_file",
    "validate_request", "loaded_model", "sound_waveform",
    "Source", "SourceError", "UnknownSource", "keep_dataset_file", "keep_source", "list_sources", "load_source",
]
