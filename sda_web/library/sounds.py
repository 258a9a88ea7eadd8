"""Generated sounds: each variation kept with everything that made it.

    <data>/sounds/<sound_id>/sound.json    model, seed, controls, duration, format, variation, ...
                            sound.wav|flac the audio, as asked for
                            waveform.svg   a small picture of it

A sound may start from another sound (`source`: a transform of it) or between
two (`blend`, whose ends are dataset files or kept sounds); those are kept in
`<data>/sources/` (library/sources.py) and named in sound.json.

A request for N variations makes N sounds that share a `batch` id. Listing is
newest batch first, then by variation. Regenerating a sound from its JSON
gives the same samples, bit for bit, on the same machine (with the same
SDA_THREADS: the thread count changes float rounding), as long as its model
has not been trained further (checked: the JSON keeps the epoch).

Module-level imports are torch-free: listing and deleting are cheap. Making
sounds imports the generation stack (torch) when called; call it off the
event loop.
"""
from __future__ import annotations

import math
import re
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ..audio.io import AudioRejected
from ..generation.analysis import load_analysis
from ..generation.export import AudioFormat, encode_audio, waveform_svg
from ..generation.novelty import Nearest
from ..generation.settings import GENERATION_GL_ITERS, MIN_DURATION_S, Blend, GenerationSettings
from ..storage import atomic_write_bytes, atomic_write_json, read_json, read_records
from .errors import SoundError, UnknownSound
from .loaded import loaded_model, nearest_training_files
from .models import ModelInfo, resolve_model
from .sources import SourceError, forget_unused, is_source_id, load_source

SOUNDS_DIR = "sounds"
SOUND_FILE = "sound.json"
WAVEFORM_FILE = "waveform.svg"
BATCH_PATTERN = r"[0-9]{8}-[0-9]{12}-[0-9a-f]{6}"  # one request's sounds share it (`_new_batch_id`)
BATCH_RE = re.compile(f"^{BATCH_PATTERN}$")
_SOUND_ID_RE = re.compile(f"^{BATCH_PATTERN}-v[0-9]$")

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SoundRequest:
    """What the Generate form (or `sda generate`) asks for."""
    model: str  # a model id, display name or "latest"; stored sounds hold the id
    seed: int
    variations: int = 1
    duration_s: float = 2.0
    controls: dict[str, float] = field(default_factory=dict)  # label -> standard deviations
    variation_amount: float = 1.0
    blend: tuple[str, str, float] | None = None  # (file a, file b, amount 0..1)
    format: str = "wav"
    bits: int = 16
    rate: int | None = None  # None: the model's rate
    gl_iters: int = GENERATION_GL_ITERS
    source: str | None = None  # a kept sound's id (library/sources.py): re-synthesise it (duration is its own)

    @property
    def audio_format(self) -> AudioFormat:
        return AudioFormat.parse(self.format, self.bits, self.rate)

    def settings(self) -> GenerationSettings:
        return GenerationSettings(seed=self.seed, variations=self.variations, duration_s=self.duration_s,
                                  controls=dict(self.controls), variation_amount=self.variation_amount,
                                  blend=Blend(*self.blend) if self.blend else None, gl_iters=self.gl_iters)

    def to_dict(self) -> dict:
        return {"model": self.model, "seed": self.seed, "variations": self.variations, "duration_s": self.duration_s,
                "controls": dict(self.controls), "variation_amount": self.variation_amount,
                "blend": list(self.blend) if self.blend else None, "format": self.format, "bits": self.bits,
                "rate": self.rate, "gl_iters": self.gl_iters, **({"source": self.source} if self.source else {})}

    @classmethod
    def from_dict(cls, data: dict) -> "SoundRequest":
        blend = data.get("blend")
        return cls(model=data["model"], seed=data["seed"], variations=data.get("variations", 1),
                   duration_s=data.get("duration_s", 2.0), controls=dict(data.get("controls") or {}),
                   variation_amount=data.get("variation_amount", 1.0), blend=tuple(blend) if blend else None,
                   format=data.get("format", "wav"), bits=data.get("bits", 16), rate=data.get("rate"),
                   gl_iters=data.get("gl_iters", GENERATION_GL_ITERS), source=data.get("source"))

    def source_ids(self) -> list[str]:
        """The kept sounds this request starts from (transform source, blend ends)."""
        ends = [self.source] + (list(self.blend[:2]) if self.blend else [])
        return [e for e in ends if is_source_id(e)]


@dataclass(frozen=True)
class Sound:
    sound_id: str
    batch: str  # shared by the variations of one request
    created: str  # ISO 8601, UTC
    request: SoundRequest  # request.model is the model id
    variation: int  # 1-based
    model_name: str  # the model's name when the sound was made
    model_epoch: int  # the checkpoint epoch it was made with
    sample_rate: int  # of the stored file
    duration_s: float
    file_name: str
    sound_dir: Path
    sources: dict = field(default_factory=dict)  # kept-sound id -> {"name", "origin", "dataset"}: what it came from
    nearest: Nearest | None = None  # its nearest training file (None: made before this was measured)

    @property
    def audio_path(self) -> Path:
        return self.sound_dir / self.file_name

    @property
    def waveform_path(self) -> Path:
        return self.sound_dir / WAVEFORM_FILE

    @property
    def mime_type(self) -> str:
        return self.request.audio_format.mime_type

    @property
    def title(self) -> str:
        return f"{self.model_name} seed {self.request.seed} v{self.variation}"

    def source_label(self, ref: str | None) -> str:
        """source_name, marked "(uploaded)" for a sound that was not one of a dataset's."""
        name = self.source_name(ref)
        return f"{name} (uploaded)" if ref in self.sources and self.sources[ref].get("origin") == "upload" else name

    def source_name(self, ref: str | None) -> str:
        """A blend end or source as a person knows it: the dataset file name, or the kept sound's name."""
        if ref and ref in self.sources:
            return str(self.sources[ref].get("name") or ref)
        return ref or ""

    def to_dict(self) -> dict:
        return {"id": self.sound_id, "batch": self.batch, "created": self.created, "params": self.request.to_dict(),
                "variation": self.variation, "model_name": self.model_name, "model_epoch": self.model_epoch,
                "sample_rate": self.sample_rate, "duration_s": self.duration_s, "file": self.file_name,
                "sources": self.sources, **({"nearest": self.nearest.to_dict()} if self.nearest else {})}


# -- making sounds ----------------------------------------------------------

def validate_request(data_dir: Path, request: SoundRequest) -> tuple[ModelInfo, SoundRequest]:
    """Resolve the model and check every parameter that can be checked without loading it
    (raises a ValueError subclass with a clear sentence). Returns the model and the request
    with `model` set to its id. Control labels and blend files are checked against the
    stored analysis when there is one (else when `render` has made it)."""
    from dataclasses import replace

    model = resolve_model(data_dir, request.model)
    fmt = request.audio_format  # ExportError for a bad format, bit depth or rate
    sources = request_sources(data_dir, request)  # UnknownSource when one is gone
    if request.source is not None:
        request = replace(request, duration_s=sources[request.source].duration_s, blend=None)
    settings = request.settings()
    analysis = load_analysis(model.run_dir) if (settings.controls or settings.blend) else None
    if analysis is None:
        settings = replace(settings, controls={}, blend=None)
    _checked(settings, analysis, sources, request.source is not None)
    return model, replace(request, model=model.model_id, format=fmt.format, bits=fmt.bits, rate=fmt.rate)


def request_sources(data_dir: Path, request: SoundRequest) -> dict:
    """The kept sounds a request names, by id (UnknownSource, a SoundError, when one is gone)."""
    if request.source is not None and not is_source_id(request.source):
        raise SoundError("The sound to start from is not one this library keeps; upload it again.")
    try:
        return {ref: load_source(data_dir, ref) for ref in request.source_ids()}
    except SourceError as exc:
        raise SoundError(str(exc)) from None


def _checked(settings: GenerationSettings, analysis, sources: dict, transform: bool) -> GenerationSettings:
    """The settings validated for what the request does (a transform's duration is its source's)."""
    from dataclasses import replace

    checked = settings
    if transform:
        checked = replace(settings, duration_s=MIN_DURATION_S, blend=None)
    checked.validated(analysis, known_sounds=frozenset(sources))
    return settings


@dataclass(frozen=True)
class Rendered:
    """Samples made from a request, not stored anywhere."""
    model: ModelInfo
    model_epoch: int  # of the checkpoint used
    sample_rate: int  # of the waves (the model's)
    waves: dict  # variation (1-based) -> float32 mono numpy array
    request: SoundRequest  # as validated, `model` set to the model id
    sources: dict = field(default_factory=dict)  # kept-sound id -> {"name", "origin", "dataset"}
    nearest: dict = field(default_factory=dict)  # variation -> Nearest (its nearest training file), when known


def render(data_dir: Path, request: SoundRequest, *, device: str = "cpu", progress: Progress | None = None,
           variations: list[int] | None = None) -> Rendered:
    """Make the samples of a request (all its variations, or just `variations`)."""
    # torch only when a sound is made: the server and the Library's pages start without it
    from ..generation.synth import generate_variation
    from ..generation.transform import morph_variation, transform_variation

    model, request = validate_request(data_dir, request)
    sources = request_sources(data_dir, request)
    trained, analysis = loaded_model(model, device)
    settings = _checked(request.settings(), analysis, sources, request.source is not None)
    rate = trained.spec.sample_rate
    if request.source is not None:
        source_wave = _source_wave(sources[request.source], rate)

        def make(index):
            return transform_variation(trained, analysis, source_wave, settings, index)
    elif settings.blend is not None and any(end in sources for end in (settings.blend.file_a, settings.blend.file_b)):
        a, b = (_end_latent(trained, analysis, sources, end, rate) for end in (settings.blend.file_a, settings.blend.file_b))

        def make(index):
            return morph_variation(trained, analysis, settings, index, a, b, settings.blend.amount)
    else:
        def make(index):
            return generate_variation(trained, analysis, settings, index)
    wanted = variations or list(range(1, settings.variations + 1))
    waves = {}
    for done, variation in enumerate(wanted, start=1):
        waves[variation] = make(variation - 1)
        if progress:
            progress(done, len(wanted))
    kept = {ref: {"name": src.name, "origin": src.origin, "dataset": src.dataset} for ref, src in sources.items()}
    return Rendered(model, trained.epoch, rate, waves, request, kept, nearest_training_files(model, trained, analysis, waves))


def transform_file(data_dir: Path, request: SoundRequest, path: Path, *, device: str = "cpu") -> Rendered:
    """A transform of a sound file that is not kept in the library (`sda transform --out`): the
    same samples as a kept source with the same bytes would give. AudioRejected (`.reason`, the
    importer's sentence) when the file cannot be used."""
    from dataclasses import replace

    # torch only when a sound is made: the server and the Library's pages start without it
    from ..generation.transform import load_source as load_wave, transform_variation

    model, request = validate_request(data_dir, replace(request, source=None, blend=None))
    trained, analysis = loaded_model(model, device)
    rate = trained.spec.sample_rate
    wave = load_wave(Path(path), rate)
    request = replace(request, duration_s=len(wave) / rate)
    settings = _checked(request.settings(), analysis, {}, transform=True)
    waves = {v: transform_variation(trained, analysis, wave, settings, v - 1) for v in range(1, settings.variations + 1)}
    return Rendered(model, trained.epoch, rate, waves, request, nearest=nearest_training_files(model, trained, analysis, waves))


def _source_wave(source, sample_rate: int):
    # torch only when a sound is made: the server and the Library's pages start without it
    from ..generation.transform import load_source as load_wave

    try:
        return load_wave(source.audio_path, sample_rate)
    except AudioRejected as exc:
        raise SoundError(f"{source.name} cannot be used: {exc.reason}") from None


def _end_latent(trained, analysis, sources: dict, end: str, sample_rate: int):
    """A blend end's latent: a kept sound encoded, or a dataset file's from the analysis."""
    import numpy as np

    # torch only when a sound is made: the server and the Library's pages start without it
    from ..generation.transform import source_latent

    if end in sources:
        return source_latent(trained, _source_wave(sources[end], sample_rate))
    return np.asarray(analysis.file_latents[end], dtype=np.float64)


def generate_sounds(data_dir: Path, request: SoundRequest, *, device: str = "cpu",
                    progress: Progress | None = None) -> list[Sound]:
    """Make the request's variations and keep each as a sound in the library."""
    fmt = request.audio_format
    made = render(data_dir, request, device=device, progress=progress)
    rate = made.sample_rate
    batch = _new_batch_id()
    created = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    sounds = []
    for variation, wave in made.waves.items():
        sound_id = f"{batch}-v{variation}"
        folder = sounds_root(data_dir) / sound_id
        sound = Sound(sound_id=sound_id, batch=batch, created=created, request=made.request, variation=variation,
                      model_name=made.model.name, model_epoch=made.model_epoch, sample_rate=fmt.output_rate(rate),
                      duration_s=len(wave) / rate, file_name="sound" + fmt.extension, sound_dir=folder,
                      sources=made.sources, nearest=made.nearest.get(variation))
        atomic_write_bytes(sound.audio_path, encode_audio(wave, rate, fmt))
        atomic_write_bytes(sound.waveform_path, waveform_picture(wave, sound).encode("utf-8"))
        atomic_write_json(folder / SOUND_FILE, sound.to_dict())  # last: a folder without it is not listed
        sounds.append(sound)
    return sounds


def regenerate(data_dir: Path, sound_id: str, *, device: str = "cpu"):
    """(float32 samples, sample rate): a stored sound made again from its parameters, at the
    model's rate, before any file encoding. Refused if its model has been trained further."""
    sound = load_sound(data_dir, sound_id)
    made = render(data_dir, sound.request, device=device, variations=[sound.variation])
    if made.model_epoch != sound.model_epoch:
        raise SoundError(f"Model {made.model.name!r} has been trained further since this sound was made "
                         f"(epoch {sound.model_epoch}, now {made.model_epoch}), so it cannot be made again exactly.")
    return made.waves[sound.variation], made.sample_rate


def export_sound(data_dir: Path, sound_id: str, fmt: AudioFormat, *, device: str = "cpu") -> bytes:
    """The sound as a file in another format: made again from its parameters when its model is
    unchanged (no double quantisation), else converted from the stored file."""
    sound = load_sound(data_dir, sound_id)
    if fmt == sound.request.audio_format:
        return sound.audio_path.read_bytes()
    try:
        wave, rate = regenerate(data_dir, sound_id, device=device)
    except (SoundError, ValueError):
        import soundfile as sf

        wave, rate = sf.read(str(sound.audio_path), dtype="float32")
    return encode_audio(wave, rate, fmt)


# -- the library ------------------------------------------------------------

def sounds_root(data_dir: Path) -> Path:
    return Path(data_dir) / SOUNDS_DIR


def list_sounds(data_dir: Path, model_id: str | None = None) -> list[Sound]:
    """Every kept sound, newest request first, variations in order; unreadable ones skipped."""
    sounds = [sound for sound in read_records(sounds_root(data_dir), _SOUND_ID_RE, _read_sound,
                                              (OSError, ValueError, KeyError, TypeError))
              if model_id is None or sound.request.model == model_id]
    sounds.sort(key=lambda s: s.variation)
    sounds.sort(key=lambda s: (s.created, s.batch), reverse=True)
    return sounds


def waveform_picture(wave, sound: Sound) -> str:
    """The sound's waveform drawn at its own peak (a quiet sound still shows its shape), labelled
    with its length and level."""
    import numpy as np

    wave = np.asarray(wave, dtype=np.float32)
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    level = f"peak {20 * math.log10(peak):.0f} dBFS" if peak > 0 else "silent"
    return waveform_svg(wave / peak if peak > 0 else wave,
                        label=f"Waveform of {sound.title}, {sound.duration_s:.1f} s, {level}")


def sound_waveform(sound: Sound) -> str | None:
    """The stored waveform picture. One kept before pictures were drawn at the sound's peak is
    redrawn from its audio, once, and stored; None when neither the picture nor the audio reads."""
    import soundfile as sf

    try:
        stored = sound.waveform_path.read_text()
        if "dBFS" in stored or ', silent"' in stored:
            return stored
    except OSError:
        stored = None
    try:
        wave, _ = sf.read(str(sound.audio_path), dtype="float32", always_2d=True)
    except (OSError, RuntimeError):  # soundfile's errors are RuntimeErrors
        return stored
    picture = waveform_picture(wave.mean(axis=1), sound)
    try:
        atomic_write_bytes(sound.waveform_path, picture.encode("utf-8"))
    except OSError:
        pass  # shown all the same; drawn again next time
    return picture


def load_sound(data_dir: Path, sound_id: str) -> Sound:
    if not _SOUND_ID_RE.match(sound_id or ""):
        raise UnknownSound(f"{sound_id!r} is not a sound id.")
    try:
        return _read_sound(sounds_root(data_dir) / sound_id)
    except FileNotFoundError:
        raise UnknownSound(f"There is no sound {sound_id!r}; it may have been deleted.") from None
    except (OSError, ValueError, KeyError, TypeError):
        raise SoundError(f"The record of sound {sound_id!r} is unreadable.") from None


def delete_sound(data_dir: Path, sound_id: str) -> None:
    sound = load_sound(data_dir, sound_id)
    (sound.sound_dir / SOUND_FILE).unlink()  # first: a half-deleted folder is no longer listed
    shutil.rmtree(sound.sound_dir, ignore_errors=True)
    if sound.request.source_ids():  # the sounds it came from go with the last sound made from them
        still = {ref for other in list_sounds(data_dir) for ref in other.request.source_ids()}
        forget_unused(data_dir, sound.request.source_ids(), still)


# -- internals --------------------------------------------------------------

def _read_sound(folder: Path) -> Sound:
    data = read_json(folder / SOUND_FILE)
    return Sound(sound_id=data["id"], batch=data["batch"], created=data["created"],
                 request=SoundRequest.from_dict(data["params"]), variation=int(data["variation"]),
                 model_name=data.get("model_name", ""), model_epoch=int(data.get("model_epoch", 0)),
                 sample_rate=int(data["sample_rate"]), duration_s=float(data["duration_s"]), file_name=data["file"],
                 sound_dir=folder, sources=dict(data.get("sources") or {}),
                 nearest=Nearest.from_dict(data["nearest"]) if data.get("nearest") else None)


def _new_batch_id() -> str:
    return f"{datetime.now():%Y%m%d-%H%M%S%f}-{uuid.uuid4().hex[:6]}"
