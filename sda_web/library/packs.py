"""File names for sounds, and the sample pack: every kept variation of one request in one zip,
with what made them."""
from __future__ import annotations

import re
from pathlib import Path

from ..generation.export import AudioFormat
from .errors import SoundError, UnknownSound
from .sounds import BATCH_RE, Sound, load_sound


def download_name(sound: Sound, fmt: AudioFormat | None = None) -> str:
    """A file name for the sound in `fmt` (default: as stored): model-seed7-v2.wav, or
    model-kick-seed7-v2.wav for a transform of kick.wav."""
    start = Path(sound.source_name(sound.request.source)).stem if sound.request.source else ""
    return sound_file_name(sound.model_name, sound.request.seed, sound.variation, fmt or sound.request.audio_format,
                           start)


def sound_file_name(model_name: str, seed: int, variation: int, fmt: AudioFormat, start: str = "") -> str:
    middle = f"-{start}" if start else ""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{model_name}{middle}-seed{seed}-v{variation}").strip("-.")
    return (stem or f"sound-seed{seed}-v{variation}") + fmt.extension


def sample_pack(data_dir: Path, batch: str) -> tuple[bytes, str]:
    """(zip bytes, download name): every kept variation of one request as stored, and
    settings.json with what made them (model, epoch, every parameter, the sounds it started from)."""
    import io
    import json
    import zipfile

    if not BATCH_RE.match(batch or ""):
        raise UnknownSound(f"{str(batch)[:40]!r} is not the id of a set of sounds.")
    sounds = [s for s in (_maybe_sound(data_dir, f"{batch}-v{v}") for v in range(1, 10)) if s is not None]
    if not sounds:
        raise UnknownSound("Those sounds are no longer in the library; they were deleted.")
    first = sounds[0]
    names, files = set(), []
    for sound in sounds:
        name = download_name(sound)
        while name in names:
            name = "x-" + name
        names.add(name)
        files.append((name, sound))
    settings = {
        "made_with": "sda-web", "batch": batch, "created": first.created,
        "model": {"id": first.request.model, "name": first.model_name, "epoch": first.model_epoch},
        "settings": first.request.to_dict(), "sources": first.sources,
        "sounds": [{"file": name, "variation": s.variation, "seed": s.request.seed, "duration_s": s.duration_s,
                    "sample_rate": s.sample_rate, "format": s.request.format, "bits": s.request.bits,
                    **({"nearest_training_file": s.nearest.to_dict()} if s.nearest else {})}
                   for name, s in files],
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:  # audio does not deflate
        for name, sound in files:
            archive.write(sound.audio_path, name)
        archive.writestr("settings.json", json.dumps(settings, indent=1))
    start = Path(first.source_name(first.request.source)).stem if first.request.source else ""
    stem = Path(sound_file_name(first.model_name, first.request.seed, 0, first.request.audio_format, start)).stem
    return buffer.getvalue(), stem.removesuffix("-v0") + "-pack.zip"


def _maybe_sound(data_dir: Path, sound_id: str):
    try:
        return load_sound(data_dir, sound_id)
    except SoundError:
        return None
