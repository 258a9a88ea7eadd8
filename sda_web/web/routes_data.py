"""The Data tab: upload or demo sounds, watch the import, pick or delete datasets."""
from __future__ import annotations

import asyncio
import re
import shutil

from starlette.requests import Request
from starlette.routing import Route

from ..datasets import DatasetError, delete_dataset, import_files, import_folder, list_datasets
from .common import is_htmx, redirect, render
from .imports import UploadError, new_upload_dir, receive_upload
from .selection import current_dataset, store_selection

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


async def data_page(request: Request, message: str | None = None, kind: str = "error", status_code: int = 200):
    jobs = request.app.state.imports
    job = jobs.get(request.query_params.get("job", "")) or next(iter(jobs.active()), None)
    deleted = request.query_params.get("deleted")
    if deleted and not message:
        message, kind = f"Deleted the dataset “{deleted}”.", "ok"
    context = await _datasets_context(request, tab="data_page", job=job, data_message=message,
                                      data_message_kind=kind, fresh=job.name if job and not job.running else None)
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


async def _upload_failed(request: Request, message: str):
    if is_htmx(request):
        return render(request, "partials/import_status.html", {"job": None, "upload_error": message},
                      status_code=422)
    return await data_page(request, message, status_code=422)


async def data_upload(request: Request):
    app = request.app
    data_dir = app.state.data_dir
    dest = await asyncio.to_thread(new_upload_dir, data_dir)
    try:
        fields, files = await receive_upload(request, dest)
        name = re.sub(r"\s+", " ", fields.get("name", "")).strip() or DEFAULT_NAME
        if not files:
            raise UploadError("Choose one or more sound files to upload.")
    except UploadError as exc:
        await asyncio.to_thread(shutil.rmtree, dest, True)
        return await _upload_failed(request, str(exc))
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, dest, True)
        raise

    def work(job):
        job.total, job.stage = len(files), "Checking files…"
        return import_files(data_dir, name, files, progress=job.progress)

    job = app.state.imports.start(name, work, cleanup=dest, on_done=_select_when_done(data_dir))
    return await _job_response(request, job)


async def data_demo(request: Request):
    from ..audio.demo import write_demo_sounds

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
    job = request.app.state.imports.get(request.path_params["job_id"])
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
    from .routes_train import refresh_idle_view

    form = await request.form()
    name = str(form.get("name", ""))
    data_dir = request.app.state.data_dir
    datasets = await asyncio.to_thread(list_datasets, data_dir)
    if name not in {ds.name for ds in datasets}:
        return await _datasets_response(request, f"There is no dataset called “{name}”.", status_code=404)
    await asyncio.to_thread(store_selection, data_dir, name)
    await refresh_idle_view(request.app)
    return await _datasets_response(request)


async def data_delete_confirm(request: Request):
    name = request.path_params["name"]
    return render(request, "confirm_delete.html", {"tab": "data_page", "name": name})


async def data_delete(request: Request):
    from .routes_train import refresh_idle_view

    name = request.path_params["name"]
    app = request.app
    hub = app.state.hub
    if hub.view.running and hub.view.dataset == name:
        return await _datasets_response(
            request, f"“{name}” is training right now; cancel the run on the Train tab before deleting it.",
            status_code=409)
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
