"""The Data tab: upload or demo sounds, watch the import, pick or delete datasets."""
from __future__ import annotations

import asyncio
import re
import shutil

from starlette.requests import Request
from starlette.routing import Route

from ..audio.demo import write_demo_sounds
from ..datasets import DatasetError, delete_dataset, import_files, import_folder, list_datasets, sanitize_name
from ..datasets.manifest import MAX_NAME_LENGTH
from .common import is_htmx, redirect, render
from .input_checks import query_text, read_form
from .routes_train import refresh_idle_view
from .selection import current_dataset, store_selection
from .uploads import UploadError, new_upload_dir, receive_upload

DEMO_NAME = "demo"
DEFAULT_NAME = "my-sounds"


async def _datasets_context(request: Request, **extra) -> dict:
    data_dir = request.app.state.data_dir

    def read():
        datasets = list_datasets(data_dir)
        current = current_dataset(data_dir, datasets)
        return datasets, current

    datasets, current = await asyncio.to_thread(read)
    return {"datasets": datasets, "current": current.name if current else None, **extra}


def _suggested_name(datasets) -> str:
    taken = {ds.name for ds in datasets}
    if DEFAULT_NAME not in taken:
        return DEFAULT_NAME
    n = 2
    while f"{DEFAULT_NAME}-{n}" in taken:
        n += 1
    return f"{DEFAULT_NAME}-{n}"


async def data_page(request: Request, message: str | None = None, kind: str = "error", status_code: int = 200,
                    **extra):
    jobs = request.app.state.imports
    job = jobs.get(query_text(request, "job", pattern=r"\d{1,9}", label="import number") or "")
    job = job or next(iter(jobs.active()), None)
    deleted = query_text(request, "deleted", max_length=MAX_NAME_LENGTH, label="dataset name")
    if deleted and not message and _is_clean_name(deleted):
        message, kind = f"Deleted the dataset “{deleted}”.", "ok"
    context = await _datasets_context(request, tab="data_page", job=job, data_message=message,
                                      data_message_kind=kind, fresh=job.name if job and not job.running else None,
                                      **extra)
    context["suggested_name"] = _suggested_name(context["datasets"])
    context["refresh"] = 1 if job and job.running else None  # no-JS: reload until the import is done
    return render(request, "data.html", context, status_code=status_code)


def _select_when_done(data_dir):
    def on_done(job):
        store_selection(data_dir, job.manifest.name)
    return on_done


async def _job_response(request: Request, job, status_code: int = 200):
    if is_htmx(request):
        return render(request, "partials/import_status.html", {"job": job}, status_code=status_code)
    return redirect(request, "data_page") if job is None else _see_job(request, job)


def _see_job(request, job):
    response = redirect(request, "data_page")
    response.headers["location"] += f"?job={job.id}"
    return response


def _is_clean_name(name: str) -> bool:
    """A name exactly as stored ("tones", not "tones " or "../tones", which sanitise to it)."""
    try:
        return sanitize_name(name) == name
    except DatasetError:
        return False


async def _upload_failed(request: Request, exc: UploadError):
    context = {"upload_error": str(exc), "upload_rejected": exc.rejected}
    if is_htmx(request):
        return render(request, "partials/import_status.html", {"job": None, **context},
                      status_code=exc.status_code)
    return await data_page(request, status_code=exc.status_code, **context)


def _dataset_name(fields: dict) -> str:
    name = re.sub(r"\s+", " ", fields.get("name", "")).strip() or DEFAULT_NAME
    if len(name) > MAX_NAME_LENGTH:
        raise UploadError(f"The dataset name is too long ({len(name)} characters); use at most {MAX_NAME_LENGTH}.")
    try:
        return sanitize_name(name)
    except DatasetError as exc:
        raise UploadError(str(exc)) from None


async def data_upload(request: Request):
    """Stream the files to disk, then import the complete ones in the background.

    Files refused while receiving (too large, empty, cut off) are listed with
    the import's own refusals; a lost connection still imports what arrived."""
    app = request.app
    data_dir = app.state.data_dir
    dest = await asyncio.to_thread(new_upload_dir, data_dir)
    try:
        upload = await receive_upload(request, dest, app.state.upload_limits)
        name = _dataset_name(upload.fields)
        if not upload.files:
            if upload.rejected:
                raise UploadError("None of the files could be used; nothing was imported.", upload.rejected)
            if upload.cut_off:
                raise UploadError("The upload was cut off or malformed before any file arrived; please try again.")
            raise UploadError("Choose one or more sound files to upload.")
    except UploadError as exc:
        await asyncio.to_thread(shutil.rmtree, dest, True)
        return await _upload_failed(request, exc)
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, dest, True)
        raise

    files, refused = upload.files, upload.rejected

    def work(job):
        job.total, job.stage = len(files), "Checking files…"
        return import_files(data_dir, name, files, progress=job.progress, rejected_before=refused)

    job = app.state.imports.start(name, work, cleanup=dest, on_done=_select_when_done(data_dir))
    return await _job_response(request, job)


async def data_demo(request: Request):
    app = request.app
    data_dir = app.state.data_dir
    dest = await asyncio.to_thread(new_upload_dir, data_dir)

    def work(job):
        job.stage = "Writing demo sounds…"
        folder = dest / DEMO_NAME
        write_demo_sounds(folder)
        job.stage = "Checking files…"
        return import_folder(data_dir, folder, name=DEMO_NAME, progress=job.progress)

    job = app.state.imports.start(DEMO_NAME, work, cleanup=dest, on_done=_select_when_done(data_dir))
    return await _job_response(request, job)


async def import_status(request: Request):
    job = request.app.state.imports.get(request.path_params["job_id"][:20])
    if job is None:
        return render(request, "partials/import_status.html", {"job": None})
    context = {"job": job}
    if not job.running:  # the list changed: refresh it too
        context.update(await _datasets_context(request, oob_datasets=True, fresh=job.name))
    return render(request, "partials/import_status.html", context)


async def _datasets_response(request: Request, message: str | None = None, kind: str = "error",
                             status_code: int = 200, deleted: str | None = None):
    if is_htmx(request):
        context = await _datasets_context(request, data_message=message, data_message_kind=kind)
        return render(request, "partials/datasets.html", context, status_code=status_code)
    if message and kind == "error":
        return await data_page(request, message, kind, status_code=status_code)
    response = redirect(request, "data_page")
    if deleted:
        from urllib.parse import quote

        response.headers["location"] += f"?deleted={quote(deleted)}"
    return response


async def data_select(request: Request):
    form = await read_form(request)
    name = form.get("name", "")[:200]
    if not name:
        return await _datasets_response(request, "Choose a dataset to select.", status_code=422)
    data_dir = request.app.state.data_dir
    datasets = await asyncio.to_thread(list_datasets, data_dir)
    if name not in {ds.name for ds in datasets}:
        return await _datasets_response(request, f"There is no dataset called “{name}”.", status_code=404)
    await asyncio.to_thread(store_selection, data_dir, name)
    await refresh_idle_view(request.app)
    return await _datasets_response(request)


async def _existing_name(request: Request) -> str | None:
    """The {name} of the URL when it is exactly an existing dataset's name, else None."""
    name = request.path_params["name"]
    if not _is_clean_name(name):
        return None
    datasets = await asyncio.to_thread(list_datasets, request.app.state.data_dir)
    return name if name in {ds.name for ds in datasets} else None


def _no_such_dataset(name: str) -> str:
    shown = name if len(name) <= 40 else name[:39] + "…"
    return f"There is no dataset called “{shown}”; it may have been deleted already."


async def data_delete_confirm(request: Request):
    name = await _existing_name(request)
    if name is None:
        return await data_page(request, _no_such_dataset(request.path_params["name"]), status_code=404)
    return render(request, "confirm_delete.html", {"tab": "data_page", "name": name})


def _in_use(app, name: str) -> str | None:
    """Why `name` cannot be deleted now (a run or an import is using it), or None."""
    hub = app.state.hub
    training = {hub.view.dataset} if hub.view.running else set()
    training |= {getattr(r.last_session, "dataset", None) for r in app.state.queue_runner.active_runners()
                 if getattr(r, "last_session", None) is not None}
    if name in training:
        return f"“{name}” is being used by the training run right now; cancel it on the Train tab, then delete the dataset."
    if any(job.name == name for job in app.state.imports.active()):
        return f"Sounds are being imported into “{name}” right now; wait for the import to finish, then delete it."
    return None


async def data_delete(request: Request):
    app = request.app
    name = await _existing_name(request)
    if name is None:
        return await _datasets_response(request, _no_such_dataset(request.path_params["name"]), status_code=404)
    async with app.state.start_lock:  # no run can start on it between the check and the delete
        busy = _in_use(app, name)
        if busy:
            return await _datasets_response(request, busy, status_code=409)
        try:
            await asyncio.to_thread(delete_dataset, app.state.data_dir, name)
        except DatasetError as exc:
            return await _datasets_response(request, str(exc), status_code=404)
    await refresh_idle_view(app)
    return await _datasets_response(request, f"Deleted the dataset “{name}”.", kind="ok", deleted=name)


routes = [
    Route("/data", data_page, name="data_page"),
    Route("/data/upload", data_upload, methods=["POST"], name="data_upload"),
    Route("/data/demo", data_demo, methods=["POST"], name="data_demo"),
    Route("/data/imports/{job_id}", import_status, name="import_status"),
    Route("/data/select", data_select, methods=["POST"], name="data_select"),
    Route("/data/datasets/{name}/delete", data_delete_confirm, methods=["GET"], name="data_delete_confirm"),
    Route("/data/datasets/{name}/delete", data_delete, methods=["POST"], name="data_delete"),
]
