"""The Train tab: settings form, start / cancel / resume, the live WebSocket, previews."""
from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from ..datasets import DatasetError, list_datasets
from ..library.models import start_choices
from ..training.config import ConfigError
from ..training.queue import QueueError
from ..training.queue_view import queued_sentence
from ..training.runner import IMPORTED_CANNOT_RESUME, plan_new_run, plan_resume
from ..training.runs import RunError, is_imported, load_run, preview_file
from . import fragments
from .input_checks import query_choice, query_flag, read_form
from .common import is_htmx, redirect, render, spawn, url
from .forms import PRESETS, ConfigForm, default_form, parse_config_form, parse_field
from .selection import current_dataset
from .view import RunView, latest_run_view, resume_offer

NO_JS_REFRESH_S = 5


# ---- the view on screen ------------------------------------------------------

async def _current(app):
    data_dir = app.state.data_dir

    def read():
        return current_dataset(data_dir, list_datasets(data_dir))

    return await asyncio.to_thread(read)


async def refresh_idle_view(app, dataset: str | None = None) -> None:
    """When nothing trains, show the current dataset's latest run (as on disk)."""
    hub = app.state.hub
    if hub.view.running:
        return
    if dataset is None:
        current = await _current(app)
        dataset = current.name if current else None
    view = await asyncio.to_thread(latest_run_view, app.state.data_dir, dataset)
    if hub.view.running:  # a run started while we read the disk
        return
    if view != hub.view:
        hub.show(view)


def after_run(app, view: RunView) -> None:
    """A run ended: find what Resume Training would continue now, and show it."""
    async def update():
        offer = await asyncio.to_thread(resume_offer, app.state.data_dir, view.dataset)
        if app.state.hub.view is view:
            app.state.hub.set_resume(offer)

    spawn(app, update())


# ---- pages and partials ------------------------------------------------------

def _log_scale(request: Request) -> bool:
    return query_flag(request, "log_scale", label="log-scale setting")


def _preset(request: Request) -> str | None:
    return query_choice(request, "preset", [value for value, _ in PRESETS], label="preset")


async def _page(request: Request, *, form: ConfigForm | None = None, status_code: int = 200, prewarm: bool = False,
                **extra):
    app = request.app
    current = await _current(app)
    if current is None:
        return render(request, "empty.html", {
            "tab": "train_page", "heading": "Nothing to train on yet",
            "text": "Add a few of your sounds (or the demo sounds) on the Data tab, then come back here to train a model on them.",
            "link": url(request, "data_page"), "link_label": "Go to the Data tab",
        }, status_code=status_code)
    if prewarm:  # torch takes seconds to import: have a training process ready before Train is pressed
        app.state.queue_runner.prewarm()
    await refresh_idle_view(app, current.name)
    view = app.state.hub.view
    log_scale = _log_scale(request)
    form = form or default_form(current.file_count, _preset(request))
    context = {
        "tab": "train_page", "dataset": current, "form": form, "presets": PRESETS, "view": view,
        "start_choices": await asyncio.to_thread(start_choices, app.state.data_dir),
        "log_scale": log_scale, "chart_html": fragments.chart(app.state.templates.env, view, log_scale),
        "queue_html": app.state.hub.queue_html,
        "refresh": NO_JS_REFRESH_S if view.running or app.state.queue_runner.is_running else None, **extra,
    }
    return render(request, "train.html", context, status_code=status_code)


async def train_page(request: Request):
    return await _page(request, prewarm=True)


async def config_fields(request: Request):
    """The fields for another preset (the preset dropdown's hx-get)."""
    current = await _current(request.app)
    form = default_form(current.file_count if current else 1, _preset(request))
    return render(request, "partials/config_fields.html", {"form": form})


def _form_error(form: ConfigForm) -> str | None:
    if "form" in form.errors or "preset" in form.errors:
        return form.errors.get("form") or form.errors.get("preset")
    if form.errors:
        n = len(form.errors)
        return f"{n} setting{'s need' if n > 1 else ' needs'} fixing; nothing was started."
    return None


async def _form_response(request: Request, form: ConfigForm, status_code: int, message: str | None = None,
                         kind: str = "error"):
    message = message or _form_error(form)
    if is_htmx(request):
        return render(request, "partials/train_form.html", {
            "form": form, "presets": PRESETS, "form_message": message, "form_message_kind": kind,
            "start_choices": await asyncio.to_thread(start_choices, request.app.state.data_dir),
        }, status_code=status_code)
    return await _page(request, form=form, status_code=status_code, form_message=message, form_message_kind=kind)


async def _message_response(request: Request, message: str | None, status_code: int, kind: str = "error"):
    if is_htmx(request):
        return render(request, "partials/train_message.html", {"message": message, "message_kind": kind},
                      status_code=status_code)
    if message is None:
        return redirect(request, "train_page")
    return await _page(request, status_code=status_code, message=message, message_kind=kind)


def requester(request: Request) -> str:
    """Who pressed Train, as the queue shows it: the address of their laptop or phone."""
    host = request.client.host if request.client else ""
    return "this machine" if host in ("127.0.0.1", "::1", "localhost", "") else host


async def _queue_and_answer(request: Request, add) -> tuple[str | None, str]:
    """Queue a run (`add` puts it in the queue), start it if a device is free, and say which:
    (None, "") when it started, else (the sentence to show, its kind)."""
    queue_runner = request.app.state.queue_runner
    try:
        entry = await asyncio.to_thread(add, queue_runner.queue)
    except QueueError as exc:
        return str(exc), "error"
    queue_runner.wake()
    await queue_runner.dispatch()
    state = await asyncio.to_thread(queue_runner.queue.state)
    found = state.find(entry.entry_id)
    if found is None:  # its turn came at once and it could not start
        failure = next((f for f in state.failures if f.entry_id == entry.entry_id), None)
        return (failure.error if failure else "That run could not start."), "error"
    if found.state == "running":
        return None, ""
    view = await queue_runner.publish()  # every viewer sees it join the queue
    if not queue_runner.executing:
        return "Queued; another server on this data folder runs the queue and will start it.", "ok"
    return queued_sentence(view, entry.entry_id) or "Queued.", "ok"


# ---- actions -----------------------------------------------------------------

async def train_start(request: Request):
    app = request.app
    data = await read_form(request)
    current = await _current(app)
    if current is None:
        return redirect(request, "data_page")
    form = parse_config_form(data, current.file_count)
    if not form.ok:
        return await _form_response(request, form, 422)
    start_from = form.values.get("start_from") or None
    try:  # what would stop it starting is said now, not when its turn comes
        plan = await asyncio.to_thread(plan_new_run, app.state.data_dir, current.name, form.config, start_from)
    except (ConfigError, DatasetError, RunError) as exc:
        return await _form_response(request, form, 422, str(exc))

    def add(queue):
        return queue.add(kind="new", dataset=current.name, requested_by=requester(request),
                         config=plan.config.to_dict(), start_from=start_from)

    message, kind = await _queue_and_answer(request, add)
    if message is not None:
        return await _form_response(request, form, 409 if kind == "error" else 202, message, kind)
    if is_htmx(request):
        return render(request, "partials/train_form.html", {
            "form": form, "presets": PRESETS, "start_choices": await asyncio.to_thread(start_choices, app.state.data_dir)})
    return redirect(request, "train_page")


async def train_cancel(request: Request):
    app = request.app
    data = await read_form(request)
    run_id = data.get("run_id", "").strip() or app.state.hub.view.run_id
    runner = app.state.queue_runner.runner_of(run_id) or next(iter(app.state.queue_runner.active_runners()), None)
    if runner is None or not runner.cancel():
        return await _message_response(request, "Nothing is training right now.", 409)
    if runner.current_run_id == app.state.hub.view.run_id:
        app.state.hub.set_cancelling()
    return await _message_response(request, None, 200)


async def train_resume(request: Request):
    app = request.app
    data = await read_form(request)
    run_id = data.get("run_id", "").strip()
    if not run_id:
        return await _message_response(request, "Choose a run to resume (the Resume Training button names it).", 422)
    epochs = None
    if data.get("epochs", "").strip():
        try:
            epochs = parse_field("epochs", data["epochs"])
        except ValueError as exc:
            return await _message_response(request, str(exc), 422)
    if app.state.queue_runner.runner_of(run_id) is not None:
        return await _message_response(request, f"Run {run_id!r} is training right now.", 409)
    try:
        info = await asyncio.to_thread(load_run, app.state.data_dir, run_id)
    except RunError as exc:
        return await _message_response(request, str(exc), 404)
    if info.status == "running":
        return await _message_response(request, f"Run {run_id!r} is training right now.", 409)
    if await asyncio.to_thread(is_imported, info.run_dir):
        return await _message_response(request, IMPORTED_CANNOT_RESUME, 409)
    if info.epochs_done < info.total_epochs:
        epochs = None  # continue to the run's own target
    elif epochs is None or epochs <= info.epochs_done:
        return await _message_response(request, (
            f"This run already trained all {info.epochs_done} epochs. Raise Max epochs above "
            f"{info.epochs_done}, then press Resume Training to continue it."), 422)
    try:
        await asyncio.to_thread(plan_resume, app.state.data_dir, run_id, epochs)
    except (ConfigError, DatasetError, RunError) as exc:
        return await _message_response(request, str(exc), 422)

    def add(queue):
        return queue.add(kind="resume", dataset=info.dataset, requested_by=requester(request), epochs=epochs,
                         run_id=run_id)

    message, kind = await _queue_and_answer(request, add)
    if message is not None:
        return await _message_response(request, message, 409 if kind == "error" else 202, kind)
    return await _message_response(request, None, 200)


async def _queue_change(request: Request, change) -> object:
    queue_runner = request.app.state.queue_runner
    try:
        await asyncio.to_thread(change, queue_runner.queue, request.path_params["entry_id"])
    except QueueError as exc:
        return await _message_response(request, str(exc), 409)
    await queue_runner.publish()
    return await _message_response(request, None, 200)


async def train_queue_remove(request: Request):
    return await _queue_change(request, lambda queue, entry_id: queue.remove(entry_id))


async def train_queue_front(request: Request):
    return await _queue_change(request, lambda queue, entry_id: queue.move_to_front(entry_id))


# ---- live and files ------------------------------------------------------------

async def train_ws(websocket: WebSocket):
    # (an odd log_scale value just means linear: a socket has no page to show a message on)
    await websocket.app.state.hub.serve(websocket, log_scale=websocket.query_params.get("log_scale") in ("on", "true", "1"))


async def preview_audio(request: Request):
    """A preview WAV, by run id and file name only, from inside the data directory."""
    try:
        path = preview_file(request.app.state.data_dir, request.path_params["run_id"], request.path_params["name"])
    except RunError:
        raise HTTPException(404) from None
    return FileResponse(path, media_type="audio/wav", headers={"Cache-Control": "no-cache"})


routes = [
    Route("/train", train_page, name="train_page"),
    Route("/train/config", config_fields, name="train_config_fields"),
    Route("/train/start", train_start, methods=["POST"], name="train_start"),
    Route("/train/cancel", train_cancel, methods=["POST"], name="train_cancel"),
    Route("/train/resume", train_resume, methods=["POST"], name="train_resume"),
    Route("/train/queue/{entry_id:str}/remove", train_queue_remove, methods=["POST"], name="train_queue_remove"),
    Route("/train/queue/{entry_id:str}/front", train_queue_front, methods=["POST"], name="train_queue_front"),
    WebSocketRoute("/train/ws", train_ws, name="train_ws"),
    Route("/train/runs/{run_id}/previews/{name}", preview_audio, name="preview_audio"),
]
