"""Importing sounds into a dataset: check each file, copy the good ones, record the rest.

Originals are only read. Copies get a sanitised name that never replaces an
existing file, and a file whose bytes are already in the dataset is skipped.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
import unicodedata
import uuid
from pathlib import Path
from typing import Callable, Iterable

from sda_web.audio.io import AUDIO_EXTENSIONS, AudioRejected, inspect_audio
from sda_web.datasets.manifest import (
    MANIFEST_FILE,
    DatasetError,
    DatasetFile,
    DatasetManifest,
    RejectedFile,
    dataset_dir,
    load_dataset,
    now_iso,
    sanitize_name,
    write_manifest,
)

Progress = Callable[[int, int], None]

# Imports read-modify-write the manifest; one at a time keeps two imports into
# the same dataset from losing each other's files.
_import_lock = threading.Lock()

_FORMAT_EXTENSIONS = {"WAV": ".wav", "WAVEX": ".wav", "FLAC": ".flac", "OGG": ".ogg", "MP3": ".mp3", "AIFF": ".aiff"}
_MAX_STORED_STEM = 80


def find_audio_files(folder: Path) -> list[Path]:
    """Files with an audio extension under `folder`, recursively, in a stable order.

    Hidden files and folders (".git", macOS "._x.wav" shadows) are skipped."""
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in names:
            if not name.startswith(".") and Path(name).suffix.lower() in AUDIO_EXTENSIONS:
                found.append(Path(root) / name)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix().lower())


def import_folder(data_dir, folder, name: str | None = None, progress: Progress | None = None) -> DatasetManifest:
    """Import every audio file under `folder` into dataset `name` (default: the folder's name)."""
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise DatasetError(f"The folder {str(folder)!r} does not exist; check the path.")
    if not folder.is_dir():
        raise DatasetError(f"{str(folder)!r} is a file, not a folder; choose the folder that holds your sounds.")
    files = find_audio_files(folder)
    if not files:
        kinds = ", ".join(sorted(AUDIO_EXTENSIONS))
        raise DatasetError(f"No audio files ({kinds}) were found in {str(folder)!r} or its subfolders.")
    name = name if name and str(name).strip() else folder.resolve().name
    return import_files(data_dir, name, [(p.relative_to(folder).as_posix(), p) for p in files], progress)


def import_files(
    data_dir, name: str, files: Iterable[tuple[str, Path]], progress: Progress | None = None,
    rejected_before: Iterable[RejectedFile] = (),
) -> DatasetManifest:
    """Check and copy `files` ((name the user knows, path) pairs) into dataset `name`.

    An existing dataset keeps its files and gains the new ones; `rejected` lists
    this import's refusals, after `rejected_before` (files the caller already
    refused, e.g. an upload over the size limit). progress(done, total) is
    called after each file."""
    clean = sanitize_name(name)
    files = list(files)
    if not files:
        raise DatasetError("No files were given to import; choose at least one sound.")
    with _import_lock:
        folder = dataset_dir(data_dir, clean)
        existed = (folder / MANIFEST_FILE).exists()
        base = load_dataset(data_dir, clean) if existed else DatasetManifest(name=clean, created=now_iso())
        audio_dir = base.audio_dir(data_dir)
        audio_dir.mkdir(parents=True, exist_ok=True)

        kept = list(base.files)
        by_hash = {f.sha256 or _sha256_of(audio_dir / f.name): f for f in kept}
        used = {f.name.lower() for f in kept} | {p.name.lower() for p in audio_dir.iterdir()}
        rejected: list[RejectedFile] = list(rejected_before)
        already_present: list[str] = []
        try:
            for done, (source_name, path) in enumerate(files, start=1):
                _import_one(source_name, Path(path), audio_dir, kept, by_hash, used, rejected, already_present)
                if progress is not None:
                    progress(done, len(files))
        finally:
            manifest = DatasetManifest(
                name=clean, created=base.created, files=tuple(kept), rejected=tuple(rejected), updated=now_iso(),
                already_present=tuple(already_present),
            )
            if kept or existed:
                write_manifest(data_dir, manifest)
            else:
                shutil.rmtree(folder, ignore_errors=True)  # nothing usable: leave no empty dataset behind
        if not kept:  # (kept is never empty when something was already present)
            error = DatasetError(_none_usable(rejected))
            error.rejected = tuple(rejected)  # for pages that list every reason
            raise error
        return manifest


def _import_one(source_name, path, audio_dir, kept, by_hash, used, rejected, already_present) -> None:
    try:
        if _sha256_of(path) in by_hash:  # re-importing a folder: skip known files before decoding them
            already_present.append(source_name)
            return
    except OSError as exc:
        rejected.append(RejectedFile(source_name, f"It could not be read ({exc.strerror or exc})."))
        return
    try:
        info = inspect_audio(path)
    except AudioRejected as exc:
        rejected.append(RejectedFile(source_name, exc.reason))
        return
    stored = _unique_name(source_name, info.format, used)
    partial = audio_dir / f".{uuid.uuid4().hex}.part"
    try:
        digest = _copy_and_hash(path, partial)
        twin = by_hash.get(digest)
        if twin is not None:  # changed between the hash check and the copy
            already_present.append(source_name)
            return
        os.replace(partial, audio_dir / stored)  # `stored` is unused, so nothing is overwritten
    except OSError as exc:
        rejected.append(RejectedFile(source_name, f"It could not be copied into the dataset ({exc.strerror or exc})."))
        return
    finally:
        partial.unlink(missing_ok=True)
    used.add(stored.lower())
    entry = DatasetFile(
        name=stored, duration_s=info.duration_s, sample_rate=info.sample_rate, channels=info.channels,
        frames=info.frames, format=info.format, source_name=source_name, sha256=digest,
    )
    kept.append(entry)
    by_hash[digest] = entry


def _none_usable(rejected: list[RejectedFile]) -> str:
    shown = " ".join(f"{r.name}: {r.reason}" for r in rejected[:3])
    more = f" (and {len(rejected) - 3} more)" if len(rejected) > 3 else ""
    count = len(rejected)
    return f"None of the {count} file{'s' if count != 1 else ''} could be used. {shown}{more}"


def _copy_and_hash(src: Path, dst: Path) -> str:
    digest = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(1 << 20):
            digest.update(chunk)
            fout.write(chunk)
    return digest.hexdigest()


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return f"missing:{path.name}"
    return digest.hexdigest()


def _unique_name(source_name: str, fmt: str, used: set[str]) -> str:
    """A safe file name from the source's base name, not colliding with `used` (case-insensitive)."""
    source = Path(source_name.replace("\\", "/"))
    # The stored name says what the file really is (FLAC bytes named .wav are stored as .flac).
    suffix = _FORMAT_EXTENSIONS.get(fmt.upper()) or (source.suffix.lower() if source.suffix.lower() in AUDIO_EXTENSIONS else ".wav")
    stem = unicodedata.normalize("NFKD", source.stem).encode("ascii", "ignore").decode("ascii")
    stem = re.sub(r"\s+", "-", stem.strip())
    stem = re.sub(r"[^A-Za-z0-9._-]", "", stem)
    stem = re.sub(r"-{2,}", "-", stem).strip(".-_")[:_MAX_STORED_STEM] or "sound"
    candidate, n = stem + suffix, 2
    while candidate.lower() in used:
        candidate, n = f"{stem}-{n}{suffix}", n + 1
    return candidate
