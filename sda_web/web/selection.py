"""Which dataset is "current": stored in <data>/web.json, shared by every browser.

One musician, one data folder: the current dataset is a property of the
folder, not of a browser, so a phone on the LAN sees the same Train tab.
"""
from __future__ import annotations

from pathlib import Path

from ..storage import atomic_write_json, read_json

SETTINGS_FILE = "web.json"


def _path(data_dir: Path) -> Path:
    return Path(data_dir) / SETTINGS_FILE


def stored_selection(data_dir: Path) -> str | None:
    try:
        value = read_json(_path(data_dir)).get("current_dataset")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


def store_selection(data_dir: Path, name: str | None) -> None:
    try:
        settings = read_json(_path(data_dir))
        if not isinstance(settings, dict):
            settings = {}
    except (OSError, ValueError):
        settings = {}
    settings["current_dataset"] = name
    atomic_write_json(_path(data_dir), settings)


def current_dataset(data_dir: Path, datasets: list) -> object | None:
    """The selected manifest, else the newest dataset, else None."""
    if not datasets:
        return None
    chosen = stored_selection(data_dir)
    for ds in datasets:
        if ds.name == chosen:
            return ds
    return max(datasets, key=lambda ds: (str(ds.created), ds.name))
