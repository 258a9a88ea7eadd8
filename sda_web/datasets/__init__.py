"""Datasets: import folders of sounds, list and delete them. No torch here."""
from sda_web.datasets.importer import find_audio_files, import_files, import_folder
from sda_web.datasets.manifest import (
    DatasetError,
    DatasetFile,
    DatasetManifest,
    RejectedFile,
    dataset_dir,
    delete_dataset,
    list_datasets,
    load_dataset,
    sanitize_name,
)

__all__ = [
    "DatasetError", "DatasetFile", "DatasetManifest", "RejectedFile", "dataset_dir", "delete_dataset",
    "find_audio_files", "import_files", "import_folder", "list_datasets", "load_dataset", "sanitize_name",
]
