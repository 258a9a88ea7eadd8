"""The Library tab: trained models (import, rename, delete, download, open in
Generate) and every generated sound (play, download in another format or a
whole request as a sample pack, delete), and the sounds they started from.

Files are served by id only (a model's run id, a sound's id, each checked by
the library), never by a path from the request.
"""
from __future__ import annotations

import asyncio
import re
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import anyio.to_thread
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

from .. import library
from ..datasets import list_datasets
from ..generation.export import AudioFormat, ExportError
from ..library import ModelBusy, ModelError, ModelInfo, UnknownModel, list_models, list_sounds
from ..library.models import MAX_NAME_LENGTH, choose_weights
from ..library.sounds import BATCH_PATTERN
from .common import is_htmx, render, url
from .generate_form import BIT_DEPTHS, FORMATS, RATES, signed
from .generation_slot import generation_slot
from .input_checks import BadInput, query_choice, query_text, read_form
from .routes_generate import MODEL_ID_PATTERN
from .sound_cards import Batch, batches, format_label, when
from .uploads import UploadError, new_upload_dir, receive_upload

MAX_BATCHES_SHOWN = 100
DONE_MESSAGES = {
    "renamed": "Model renamed.",
    "weights": "The model now makes its sounds with the weights you chose.",
    "deleted": "Model deleted. The sounds made with it are kept below.",
    "sound-deleted": "Sound deleted.",
    "imported": "Model imported; it is listed below, ready to generate with.",
}


@dataclass
class LibraryView:
    models: list[ModelInfo]
    batches: list[Batch]
    sound_counts: dict[str, int]  # model id -> sounds made with it
    total_batches: int
    filter_model: ModelInfo | None = None
    has_datasets: bool = True
    message: str | None = None
    message_kind: str = "ok"
    errors: dict[str, str] = field(default_factory=dict)  # model id -> rename/delete error
    names: dict[str, str] = field(default_factory=dict)  # model id -> the name as typed (after an error)
    import_error: str | None = None

    @property
    def model_names(self) -> dict[str, str]:
        return {m.model_id: m.name for m in self.models}


def read_library(data_dir: Path, model_id: str | None = None) -> LibraryView:
    """Models and sounds (of one model when `model_id` is given). Blocking: call in a thread."""
    models = list_models(data_dir)
    sounds = list_sounds(data_dir)
    counts = Counter(s.request.model for s in sounds)
    filter_model = next((m for m in models if m.model_id == model_id), None) if model_id else None
    if model_id:
        sounds = [s for s in sounds if s.request.model == model_id]
    groups = batches(sounds, models)
    has_datasets = bool(models) or bool(list_datasets(data_dir))
    return LibraryView(models=models, batches=groups[:MAX_BATCHES_SHOWN], sound_counts=dict(counts),
                       total_batches=len(groups), filter_model=filter_model, has_datasets=has_datasets)


def _context(view: LibraryView) -> dict:
    return {"tab": "library_page", "view": view, "formats": FORMATS, "bit_depths": BIT_DEPTHS, "rates": RATES,
            "signed": signed, "format_label": format_label, "when": when, "back": "library"}


def _respond(request: Request, view: LibraryView, status_code: int = 200):
    fragment = is_htmx(request) and request.headers.get("hx-history-restore-request") != "true"
    response = render(request, "partials/library_body.html" if fragment else "library.html", _context(view),
                      status_code=status_code)
    response.headers["Vary"] = "HX-Request"
    return response


async def _library(request: Request, status_code: int = 200, model_id: str | None = None, **changes):
    view = await asyncio.to_thread(read_library, request.app.state.data_dir, model_id)
    for key, value in changes.items():
        setattr(view, key, value)
    return _respond(request, view, status_code)


def _see_library(request: Request, done: str, model_id: str | None = None) -> RedirectResponse:
    query = f"?done={done}" + (f"&model={model_id}" if model_id else "")
    return RedirectResponse(url(request, "library_page") + query, status_code=303)


# ---- the page ----------------------------------------------------------------

async def library_page(request: Request):
    model_id = query_text(request, "model", pattern=MODEL_ID_PATTERN, label="model id")
    done = query_choice(request, "done", tuple(DONE_MESSAGES), label="message")
    return await _library(request, model_id=model_id, message=DONE_MESSAGES.get(done or ""), message_kind="ok")


# ---- models ------------------------------------------------------------------

def _model_id(request: Request) -> str:
    model_id = request.path_params["model_id"]
    if not re.fullmatch(MODEL_ID_PATTERN, model_id):
        raise HTTPException(404)
    return model_id


async def _load_model(request: Request) -> ModelInfo:
    try:
        return await asyncio.to_thread(library.load_model, request.app.state.data_dir, _model_id(request))
    except UnknownModel:
        raise HTTPException(404) from None


async def model_import(request: Request):
    """Upload an exported model (bounded like every upload), import it in a worker thread."""
    app = request.app
    data_dir = app.state.data_dir
    dest = await asyncio.to_thread(new_upload_dir, data_dir)
    try:
        try:
            upload = await receive_upload(request, dest, app.state.upload_limits)
            if upload.rejected:
                raise UploadError(f"{upload.rejected[0].name}: {upload.rejected[0].reason}")
            if not upload.files:
                raise UploadError("Choose the model's .zip file to import.")
        except UploadError as exc:
            return await _library(request, exc.status_code, import_error=str(exc))
        name, path = upload.files[0]
        named = path.with_name(Path(name).name[:120] or "model.zip")
        path.rename(named)  # the zip's own name is kept in the record of where the model came from
        try:
            await anyio.to_thread.run_sync(library.import_model, data_dir, named)
        except ValueError as exc:  # ImportRefused, ModelError: one sentence
            return await _library(request, 422, import_error=str(exc))
    finally:
        await asyncio.to_thread(shutil.rmtree, dest, True)
    if is_htmx(request):
        return await _library(request, message=DONE_MESSAGES["imported"])
    return _see_library(request, "imported")


async def model_rename(request: Request):
    model_id = _model_id(request)
    name = (await read_form(request)).get("name", "")[:MAX_NAME_LENGTH * 4]
    try:
        await asyncio.to_thread(library.rename_model, request.app.state.data_dir, model_id, name)
    except UnknownModel as exc:
        return await _library(request, 404, message=str(exc), message_kind="error")
    except ModelError as exc:
        return await _library(request, 422, errors={model_id: str(exc)}, names={model_id: name})
    if is_htmx(request):
        return await _library(request, message=DONE_MESSAGES["renamed"])
    return _see_library(request, "renamed")


async def model_weights(request: Request):
    model_id = _model_id(request)
    which = (await read_form(request)).get("weights", "")[:10]
    try:
        await asyncio.to_thread(choose_weights, request.app.state.data_dir, model_id, which)
    except UnknownModel as exc:
        return await _library(request, 404, message=str(exc), message_kind="error")
    except ModelError as exc:
        return await _library(request, 422, errors={model_id: str(exc)})
    if is_htmx(request):
        return await _library(request, message=DONE_MESSAGES["weights"])
    return _see_library(request, "weights")


async def model_delete_confirm(request: Request):
    model = await _load_model(request)
    sounds = await asyncio.to_thread(list_sounds, request.app.state.data_dir, model.model_id)
    return render(request, "confirm_delete_model.html", {"tab": "library_page", "model": model,
                                                         "sound_count": len(sounds)})


async def model_delete(request: Request):
    app = request.app
    model_id = _model_id(request)
    slot = generation_slot(app)
    if slot.model_id == model_id:
        return await _library(request, 409, errors={model_id: "This model is making sounds right now; wait for it "
                                                              "to finish, then delete it."})
    try:
        await asyncio.to_thread(library.delete_model, app.state.data_dir, model_id)
    except ModelBusy as exc:
        return await _library(request, 409, errors={model_id: str(exc)})
    except UnknownModel as exc:
        return await _library(request, 404, message=str(exc), message_kind="error")
    if is_htmx(request):
        return await _library(request, message=DONE_MESSAGES["deleted"])
    return _see_library(request, "deleted")


async def model_download(request: Request):
    """The model as one zip (weights, sound controls, config, history)."""
    model = await _load_model(request)
    data_dir = request.app.state.data_dir
    try:
        path = await asyncio.to_thread(library.export_model, data_dir, model.model_id)
    except UnknownModel:
        raise HTTPException(404) from None
    return FileResponse(path, media_type="application/zip", filename=library.export_file_name(model))


# ---- sounds ------------------------------------------------------------------

async def batch_pack(request: Request):
    """Every variation of one request as one zip, with settings.json (a sample pack)."""
    batch = request.path_params["batch"]
    if not re.fullmatch(BATCH_PATTERN, batch):
        raise HTTPException(404)
    try:
        data, name = await asyncio.to_thread(library.sample_pack, request.app.state.data_dir, batch)
    except ValueError:  # deleted, or unreadable
        raise HTTPException(404) from None
    return Response(data, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


async def source_audio(request: Request):
    """A sound a transform or morph started from, as it was given."""
    try:
        source = await asyncio.to_thread(library.load_source, request.app.state.data_dir,
                                         request.path_params["source_id"])
    except ValueError:
        raise HTTPException(404) from None
    kinds = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg", ".oga": "audio/ogg",
             ".mp3": "audio/mpeg", ".aif": "audio/aiff", ".aiff": "audio/aiff"}
    return FileResponse(source.audio_path, media_type=kinds.get(source.audio_path.suffix, "application/octet-stream"))


async def _load_sound(request: Request):
    try:
        return await asyncio.to_thread(library.load_sound, request.app.state.data_dir,
                                       request.path_params["sound_id"])
    except ValueError:  # not a sound id, deleted, or unreadable
        raise HTTPException(404) from None


async def sound_audio(request: Request):
    """The stored file, for the inline player (range requests work: seeking)."""
    sound = await _load_sound(request)
    if not sound.audio_path.is_file():
        raise HTTPException(404)
    return FileResponse(sound.audio_path, media_type=sound.mime_type)


async def sound_waveform(request: Request):
    """The sound's waveform, drawn at its peak (a quiet sound still shows its shape; the label says
    how loud it is)."""
    sound = await _load_sound(request)
    picture = await asyncio.to_thread(library.sound_waveform, sound)
    if picture is None:
        raise HTTPException(404)
    # A sound id is never reused and a sound never changes: cache it for good.
    return Response(picture_for_img(picture), media_type="image/svg+xml",
                    headers={"Cache-Control": "private, max-age=31536000, immutable"})


WAVE_COLOURS = ("#6fdcc6", "#8ab4ff")  # app.css --accent -> --train, left to right
_WAVE_FILL = ('<defs><linearGradient id="wave-fill">'
              f'<stop offset="0" stop-color="{WAVE_COLOURS[0]}"/><stop offset="1" stop-color="{WAVE_COLOURS[1]}"/>'
              '</linearGradient></defs>')


def picture_for_img(svg: str) -> str:
    """waveform_svg's picture (drawn in currentColor) painted in the accent gradient instead.

    Shown through <img>, an SVG cannot inherit the page's colour, and the
    alternative (a CSS mask with a per-sound URL) needs an inline style,
    which the Content-Security-Policy refuses."""
    head, sep, rest = svg.partition(">")
    if not sep or 'fill="currentColor"' not in rest:
        return svg
    return head + sep + _WAVE_FILL + rest.replace('fill="currentColor"', 'fill="url(#wave-fill)"')


def _download_format(request: Request, sound) -> AudioFormat:
    stored = sound.request.audio_format
    fmt = query_choice(request, "format", [v for v, _ in FORMATS], label="format") or stored.format
    bits = query_choice(request, "bits", [v for v, _ in BIT_DEPTHS], label="bit depth") or str(stored.bits)
    rate = query_choice(request, "rate", [v for v, _ in RATES], label="sample rate")
    try:
        return AudioFormat.parse(fmt, bits, rate or stored.rate)
    except ExportError as exc:  # unreachable with the choices above; kept for safety
        raise BadInput(str(exc)) from None


async def sound_download(request: Request):
    """The sound as a file: as stored, or made again / converted to another format."""
    app = request.app
    sound = await _load_sound(request)
    fmt = _download_format(request, sound)
    name = library.download_name(sound, fmt)
    if fmt == sound.request.audio_format:
        if not sound.audio_path.is_file():
            raise HTTPException(404)
        return FileResponse(sound.audio_path, media_type=fmt.mime_type, filename=name)
    slot = generation_slot(app)  # converting may make the sound again (torch): one at a time
    if not slot.claim(sound.request.model, "a download"):
        return _refused(request, slot.busy_message())
    try:
        data = await anyio.to_thread.run_sync(library.export_sound, app.state.data_dir, sound.sound_id, fmt)
    except ValueError as exc:
        return _refused(request, str(exc), 422)
    finally:
        slot.release()
    response = Response(data, media_type=fmt.mime_type)
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def _refused(request: Request, message: str, status_code: int = 409):
    if is_htmx(request):
        return render(request, "partials/notice.html", {"message": message}, status_code=status_code)
    return render(request, "error.html", {"tab": "library_page", "heading": "Not now", "message": message,
                                          "back": url(request, "library_page")}, status_code=status_code)


async def sound_delete(request: Request):
    back = (await read_form(request)).get("back")
    sound = await _load_sound(request)
    try:
        await asyncio.to_thread(library.delete_sound, request.app.state.data_dir, sound.sound_id)
    except ValueError:
        raise HTTPException(404) from None
    if is_htmx(request):
        return Response("", media_type="text/html")  # the player's element is swapped away
    if back == "generate":
        return RedirectResponse(url(request, "generate_page") + f"?batch={sound.batch}", status_code=303)
    return _see_library(request, "sound-deleted")


routes = [
    Route("/library", library_page, name="library_page"),
    Route("/library/models/import", model_import, methods=["POST"], name="model_import"),
    Route("/library/batches/{batch}/pack.zip", batch_pack, name="batch_pack"),
    Route("/library/sources/{source_id}/audio", source_audio, name="source_audio"),
    Route("/library/models/{model_id}/rename", model_rename, methods=["POST"], name="model_rename"),
    Route("/library/models/{model_id}/weights", model_weights, methods=["POST"], name="model_weights"),
    Route("/library/models/{model_id}/delete", model_delete_confirm, methods=["GET"], name="model_delete_confirm"),
    Route("/library/models/{model_id}/delete", model_delete, methods=["POST"], name="model_delete"),
    Route("/library/models/{model_id}/download", model_download, name="model_download"),
    Route("/library/sounds/{sound_id}/audio", sound_audio, name="sound_audio"),
    Route("/library/sounds/{sound_id}/waveform.svg", sound_waveform, name="sound_waveform"),
    Route("/library/sounds/{sound_id}/download", sound_download, name="sound_download"),
    Route("/library/sounds/{sound_id}/delete", sound_delete, methods=["POST"], name="sound_delete"),
]
