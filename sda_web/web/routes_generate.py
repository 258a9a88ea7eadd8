"""The Generate tab: pick a model, set its sound controls, make new sounds.

A new sound starts from the dataset's average, from one sound (a transform of
it) or between two (a morph); those may be dataset files or files uploaded
with the form (it is multipart; the files are kept in the library's sources,
so the result can be made again and the same upload used again).

Making sound is CPU-bound (torch, Griffin-Lim): it runs in a worker thread,
one at a time per app (generation_slot), so the server keeps answering while
it works and a second request is refused with a sentence (409). Without
JavaScript the form posts, the browser waits, and a redirect shows the result
(/generate?batch=...), whose settings fill the form again.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Route

from .. import library
from ..audio.io import AudioRejected
from ..datasets import DatasetError, list_datasets, load_dataset
from ..generation.analysis import LatentAnalysis, load_analysis
from ..generation.settings import MAX_SOURCE_S, MAX_VARIATIONS
from ..library import ModelInfo, Source, SourceError, UnknownModel, UnknownSound, list_models, load_sound
from ..library.sources import is_source_id, keep_source, list_sources, load_source, source_for
from ..library.sounds import BATCH_PATTERN
from ..training.runs import RUN_ID_PATTERN
from .input_checks import query_text, read_form
from .common import is_htmx, render, url
from .generate_form import (
    BIT_DEPTHS, CONTROL_ENDS, FORMATS, RATES, SOURCE_FILE_FIELDS, FormError, GenerateForm, new_seed, signed,
)
from .uploads import UploadError, UploadLimits, new_upload_dir, receive_upload
from .generation_slot import generation_slot
from .sound_cards import Batch, batches, format_label

log = logging.getLogger(__name__)

MODEL_ID_PATTERN = RUN_ID_PATTERN  # a model is a run


@dataclass
class GenerateView:
    """Everything the Generate tab shows, read from disk in one go (in a thread)."""
    models: list[ModelInfo]
    model: ModelInfo | None
    analysis: LatentAnalysis | None
    form: GenerateForm | None
    result: Batch | None = None
    notice: str | None = None
    has_datasets: bool = False
    dataset_files: list[str] = field(default_factory=list)  # the model's dataset: sounds to start from
    uploads: list[Source] = field(default_factory=list)  # kept uploads, newest first


def read_view(data_dir: Path, model_id: str | None = None, batch: str | None = None,
              form: GenerateForm | None = None) -> GenerateView:
    """The page for `model_id` (default the newest), showing `batch`'s sounds and settings
    when given, or re-showing a submitted `form`. Blocking file reads: call in a thread."""
    models = list_models(data_dir)
    if not models:
        return GenerateView(models=[], model=None, analysis=None, form=None,
                            has_datasets=bool(list_datasets(data_dir)))
    notice, result = None, None
    if batch:
        sounds = batch_sounds(data_dir, batch)
        if sounds:
            result = batches(sounds, models)[0]
            if form is None and not model_id:
                form = GenerateForm.from_request(sounds[0].request)
        else:
            notice = "Those sounds are no longer in the library; they were deleted."
    wanted = form.model_id if form is not None else model_id
    by_id = {m.model_id: m for m in models}
    model = by_id.get(wanted) if wanted else models[0]
    if model is None:
        notice = "That model is no longer in the library; here is the newest one."
        model = models[0]
        if form is not None:
            form.model_id = model.model_id
    if form is None:
        form = GenerateForm.defaults(model.model_id, duration_s=model.default_duration_s)
    analysis = load_analysis(model.run_dir)
    dataset_files = _dataset_files(data_dir, model, analysis)
    uploads = list_sources(data_dir, "upload")
    _show_kept(data_dir, form, model, dataset_files, uploads)
    return GenerateView(models=models, model=model, analysis=analysis, form=form, result=result, notice=notice,
                        has_datasets=True, dataset_files=dataset_files, uploads=uploads)


def _dataset_files(data_dir: Path, model: ModelInfo, analysis: LatentAnalysis | None) -> list[str]:
    try:
        return sorted(f.name for f in load_dataset(data_dir, model.dataset).files)
    except DatasetError:  # deleted, or an imported model's dataset lives elsewhere
        return analysis.files if analysis is not None else []


def _show_kept(data_dir: Path, form: GenerateForm, model: ModelInfo, dataset_files: list[str],
               uploads: list[Source]) -> None:
    """A stored request names kept sounds by id: show a dataset copy as its dataset file, and make
    sure every kept upload it names is among the choices."""
    listed = {u.source_id for u in uploads}
    for attr in ("source", "blend_a", "blend_b"):
        ref = getattr(form, attr)
        if not is_source_id(ref):
            continue
        try:
            kept = load_source(data_dir, ref)
        except SourceError:
            continue
        if attr == "source" and kept.origin == "dataset" and kept.dataset == model.dataset \
                and kept.name in dataset_files:
            form.source = kept.name
        elif ref not in listed:
            uploads.append(kept)
            listed.add(ref)


def batch_sounds(data_dir: Path, batch: str) -> list:
    """The variations of one request, in order (those not deleted)."""
    sounds = []
    for variation in range(1, MAX_VARIATIONS + 1):
        try:
            sounds.append(load_sound(data_dir, f"{batch}-v{variation}"))
        except (UnknownSound, ValueError):
            continue
    return sounds


def _full_page(request: Request) -> bool:
    """htmx asks for the fragment, except when it restores history (it needs the page)."""
    return not is_htmx(request) or request.headers.get("hx-history-restore-request") == "true"


def _respond(request: Request, view: GenerateView, status_code: int = 200, *, fragment: bool | None = None):
    if view.model is None:
        return _empty_state(request, view, status_code)
    context = {"tab": "generate_page", "view": view, "form": view.form, "formats": FORMATS, "bit_depths": BIT_DEPTHS,
               "rates": RATES, "signed": signed, "control_ends": CONTROL_ENDS, "format_label": format_label,
               "back": "generate", "max_source_s": MAX_SOURCE_S}
    fragment = (not _full_page(request)) if fragment is None else fragment
    response = render(request, "partials/generate_work.html" if fragment else "generate.html", context,
                      status_code=status_code)
    response.headers["Vary"] = "HX-Request"
    return response


def _empty_state(request: Request, view: GenerateView, status_code: int):
    if view.has_datasets:
        text = ("There is no trained model yet. Train one on your sounds first (even a few minutes of training "
                "gives something to play with), or import one in the Library; it appears here as soon as it has "
                "a checkpoint.")
        link, label = url(request, "train_page"), "Go to Train"
    else:
        text = ("There is nothing to generate from yet. Add a few of your sounds (or the demo sounds) on the Data "
                "tab, train a model on them, and come back here to make new ones (or import a model someone "
                "exported, in the Library).")
        link, label = url(request, "data_page"), "Go to the Data tab"
    return render(request, "empty.html", {"tab": "generate_page", "heading": "No model to generate with",
                                          "text": text, "link": link, "link_label": label}, status_code=status_code)


# ---- pages -------------------------------------------------------------------

async def generate_page(request: Request):
    model_id = query_text(request, "model", pattern=MODEL_ID_PATTERN, label="model id")
    batch = query_text(request, "batch", pattern=BATCH_PATTERN, label="result id")
    view = await asyncio.to_thread(read_view, request.app.state.data_dir, model_id, batch)
    return _respond(request, view)


async def _form_failed(request: Request, form: GenerateForm, message: str, status_code: int, field: str | None = None):
    form.error, form.error_field = message, field
    view = await asyncio.to_thread(read_view, request.app.state.data_dir, form=form)
    return _respond(request, view, status_code)


# ---- actions -----------------------------------------------------------------

async def _read_fields(request: Request) -> tuple[dict, dict, list, Path | None]:
    """(fields, {file field: (name, temp path)}, files refused while receiving, temp folder or None).
    The form is multipart when it carries files (bounded as every upload is), else urlencoded."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return await read_form(request), {}, [], None
    app = request.app
    limits = app.state.upload_limits
    limits = UploadLimits(limits.file_bytes, min(limits.request_bytes, len(SOURCE_FILE_FIELDS) * limits.file_bytes
                                                 + (1 << 20)))
    dest = await asyncio.to_thread(new_upload_dir, app.state.data_dir)
    try:
        upload = await receive_upload(request, dest, limits)
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, dest, True)
        raise
    files = {name: part for name, part in zip(upload.file_fields, upload.files) if name in SOURCE_FILE_FIELDS}
    return upload.fields, files, upload.rejected, dest


def keep_starts(data_dir: Path, form: GenerateForm, files: dict) -> None:
    """Keep the uploaded sounds (and a dataset file to start from) as sources; the form then names
    them by id. FormError with the importer's reason for a file that cannot be used. Blocking."""
    for input_name, (name, path) in files.items():
        target = input_name.removesuffix("_file")
        try:
            kept = keep_source(data_dir, path, name)
        except AudioRejected as exc:
            raise FormError("source" if target == "source" else "blend", f"{name}: {exc.reason}") from None
        setattr(form, target, kept.source_id)
        if form.start == "average":  # a file was given: that is where the sound should start
            form.start = "sound" if target == "source" else "morph"
    if form.start == "sound" and form.source:
        try:
            dataset = functools.partial(_model_dataset, data_dir, form.model_id)  # looked up only for a file name
            form.source_id = source_for(data_dir, form.source, dataset)
        except AudioRejected as exc:
            raise FormError("source", f"{form.source}: {exc.reason}") from None
        except SourceError as exc:
            raise FormError("source", str(exc)) from None


def _model_dataset(data_dir: Path, model_id: str) -> str:
    return library.resolve_model(data_dir, model_id).dataset


async def generate_run(request: Request):
    """Keep any uploaded sound, validate (fast, no torch), then make the sounds in a worker thread."""
    try:
        fields, files, refused, dest = await _read_fields(request)
    except UploadError as exc:  # not a form, or larger than an upload may be
        return await _form_failed(request, GenerateForm.from_fields({}), str(exc), exc.status_code)
    try:
        return await _generate(request, GenerateForm.from_fields(fields), files, refused)
    finally:
        if dest is not None:
            await asyncio.to_thread(shutil.rmtree, dest, True)


async def _generate(request: Request, form: GenerateForm, files: dict, refused: list):
    app = request.app
    data_dir = app.state.data_dir
    try:
        if refused:
            raise FormError("source", f"{refused[0].name}: {refused[0].reason}")
        await asyncio.to_thread(keep_starts, data_dir, form, files)
        sound_request = form.to_request()
        model, sound_request = await asyncio.to_thread(library.validate_request, data_dir, sound_request)
    except FormError as exc:
        return await _form_failed(request, form, str(exc), 422, exc.field)
    except UnknownModel as exc:
        return await _form_failed(request, form, str(exc), 404)
    except ValueError as exc:  # the core's range, control, blend and format checks
        return await _form_failed(request, form, str(exc), 422)

    slot = generation_slot(app)
    if not slot.claim(model.model_id):
        return await _form_failed(request, form, slot.busy_message(), 409)
    try:
        # anyio's worker is not abandoned when the request is cancelled (client gone, shutdown):
        # the slot is released only once the generation has really stopped.
        sounds = await anyio.to_thread.run_sync(
            functools.partial(library.generate_sounds, data_dir, sound_request, progress=slot.progress))
    except ValueError as exc:
        return await _form_failed(request, form, str(exc), 422)
    except Exception as exc:  # torch, the disk: say so in the page, keep the details in the log
        log.exception("generation failed")
        return await _form_failed(request, form, f"Generation failed ({type(exc).__name__}: {exc}); "
                                                 "nothing was kept. Try again, or try fewer or shorter sounds.", 500)
    finally:
        slot.release()

    batch = sounds[0].batch
    if not _full_page(request):
        view = await asyncio.to_thread(read_view, data_dir, batch=batch)
        response = _respond(request, view)
        response.headers["HX-Push-Url"] = url(request, "generate_page") + f"?batch={batch}"
        return response
    return RedirectResponse(url(request, "generate_page") + f"?batch={batch}", status_code=303)


async def generate_seed(request: Request):
    """New seed: with htmx just the seed field; without, the whole form again as it was, with a fresh seed
    (a file chosen in it is not kept: it is sent again with Generate)."""
    try:
        fields, _, _, dest = await _read_fields(request)
    except UploadError:
        fields, dest = {}, None
    if dest is not None:
        await asyncio.to_thread(shutil.rmtree, dest, True)
    form = GenerateForm.from_fields(fields)
    form.seed = str(new_seed())
    if not _full_page(request):
        return render(request, "partials/seed_field.html", {"form": form})
    view = await asyncio.to_thread(read_view, request.app.state.data_dir, form=form)
    return _respond(request, view)


routes = [
    Route("/generate", generate_page, name="generate_page"),
    Route("/generate", generate_run, methods=["POST"], name="generate_run"),
    Route("/generate/seed", generate_seed, methods=["POST"], name="generate_seed"),
]
