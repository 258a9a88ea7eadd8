"""The Train tab: settings form, start / cancel / resume, the live WebSocket, previews."""
from __future__ import annotations

import asyncio
import re

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from ..datasets import DatasetError, list_datasets
from ..library.models import start_choices
from ..storage import read_json
from ..training.config import ConfigError, TrainingConfig
from ..training.runs import RunError, list_previews, load_history, load_run, run_dir_for
from . import fragments
from .bounds import query_choice, query_flag, read_form
from .common import get_runner, is_htmx, redirect, render, spawn, url
from .forms import PRESETS, ConfigForm, default_form, parse_config_form, parse_field
from .selection import current_dataset
from .view import RunView, latest_run_view, resume_offer

_PREVIEW_FILE = re.compile(r"^epoch_\d{4,}_(recon|prior)\.wav$")
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
        get_runner(app).prewarm()
    await refresh_idle_view(app, current.name)
    view = app.state.hub.view
    log_scale = _log_scale(request)
    form = form or default_form(current.file_count, _preset(request))
    context = {
        "tab": "train_page", "dataset": current, "form": form, "presets": PRESETS, "view": view,
        "start_choices": await asyncio.to_thread(start_choices, app.state.data_dir),
        "log_scale": log_scale, "chart_html": fragments.chart(app.state.templates.env, view, log_scale),
        "refresh": NO_JS_REFRESH_S if view.running else None, **extra,
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


def _busy_message(view: RunView) -> str:
    where = f" on “{view.dataset}”" if view.dataset else ""
    at = f" (epoch {view.epochs_done} of {view.total_epochs})" if view.total_epochs else ""
    return f"A training run is already active{where}{at}. Cancel it or wait for it to finish before starting another."


# ---- actions -----------------------------------------------------------------

async def train_start(request: Request):
    app = request.app
    hub = app.state.hub
    data = await read_form(request)
    current = await _current(app)
    if current is None:
        return redirect(request, "data_page")
    form = parse_config_form(data, current.file_count)
    if not form.ok:
        return await _form_response(request, form, 422)

    async with app.state.start_lock:
        runner = get_runner(app)
        if runner.is_running:  # the runner, not the view: a view can lag behind a run that just ended
            return await _form_response(request, form, 409, _busy_message(hub.view))
        previous, token = hub.view, hub.new_token()
        config = form.config
        hub.begin(token, run_id=None, dataset=current.name, total_epochs=config.epochs,
                  preview_every=config.preview_every)
        try:
            run_id = await asyncio.to_thread(runner.start, current.name, config, hub.callback_for(token),
                                             start_from=form.values.get("start_from") or None)
        except Exception as exc:
            hub.abort(token, previous)
            return await _form_response(request, form, *_start_error(exc, hub.view))
        hub.attach_run(token, run_id)

    if is_htmx(request):
        return render(request, "partials/train_form.html", {
            "form": form, "presets": PRESETS, "start_choices": await asyncio.to_thread(start_choices, app.state.data_dir)})
    return redirect(request, "train_page")


def _start_error(exc: Exception, view: RunView) -> tuple[int, str]:
    from ..training.runner import RunnerBusy

    if isinstance(exc, RunnerBusy):
        return 409, _busy_message(view)
    if isinstance(exc, (ConfigError, DatasetError, RunError)):
        return 422, str(exc)
    return 500, f"Training could not start ({type(exc).__name__}: {exc})."


async def train_cancel(request: Request):
    runner = request.app.state.runner
    if runner is None or not runner.cancel():
        return await _message_response(request, "Nothing is training right now.", 409)
    request.app.state.hub.set_cancelling()
    return await _message_response(request, None, 200)


async def train_resume(request: Request):
    app = request.app
    hub = app.state.hub
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

    async with app.state.start_lock:
        runner = get_runner(app)
        if runner.is_running:
            return await _message_response(request, _busy_message(hub.view), 409)
        try:
            info = await asyncio.to_thread(load_run, app.state.data_dir, run_id)
        except RunError as exc:
            return await _message_response(request, str(exc), 404)
        from ..library.models import IMPORTED_CANNOT_RESUME, is_imported

        if await asyncio.to_thread(is_imported, info.run_dir):
            return await _message_response(request, IMPORTED_CANNOT_RESUME, 409)
        if info.epochs_done < info.total_epochs:
            epochs = None  # continue to the run's own target
        elif epochs is None or epochs <= info.epochs_done:
            return await _message_response(request, (
                f"This run already trained all {info.epochs_done} epochs. Raise Max epochs above "
                f"{info.epochs_done}, then press Resume Training to continue it."), 422)

        def read_past():
            history = [m for m in load_history(info.run_dir) if m.epoch <= info.epochs_done]
            previews = [p for p in list_previews(info.run_dir) if p.epoch <= info.epochs_done]
            try:  # only for the "next preview at epoch N" hint
                config = TrainingConfig.from_dict(read_json(info.run_dir / "config.json"))
                preview_every = config.with_overrides(epochs=epochs).preview_every
            except (OSError, ValueError, TypeError):
                preview_every = None
            return history, previews, preview_every

        history, previews, preview_every = await asyncio.to_thread(read_past)
        previous, token = hub.view, hub.new_token()
        hub.begin(token, run_id=run_id, dataset=info.dataset, total_epochs=epochs or info.total_epochs,
                  history=history, previews=previews, preview_every=preview_every)
        try:
            await asyncio.to_thread(runner.resume, run_id, hub.callback_for(token), epochs=epochs)
        except Exception as exc:
            hub.abort(token, previous)
            status_code, message = _start_error(exc, hub.view)
            return await _message_response(request, message, status_code)
    return await _message_response(request, None, 200)


# ---- live and files ------------------------------------------------------------

async def train_ws(websocket: WebSocket):
    # (an odd log_scale value just means linear: a socket has no page to show a message on)
    await websocket.app.state.hub.serve(websocket, log_scale=websocket.query_params.get("log_scale") in ("on", "true", "1"))


async def preview_audio(request: Request):
    """A preview WAV, by run id and file name only, from inside the data directory."""
    run_id, name = request.path_params["run_id"], request.path_params["name"]
    if not _PREVIEW_FILE.match(name):
        raise HTTPException(404)
    try:
        run_dir = run_dir_for(request.app.state.data_dir, run_id)
    except RunError:
        raise HTTPException(404) from None
    path = run_dir / "previews" / name
    runs_root = (request.app.state.data_dir / "runs").resolve()
    if not path.resolve().is_relative_to(runs_root) or not path.is_file():
        raise HTTPException(404)
    return FileResponse(path, media_type="audio/wav", headers={"Cache-Control": "no-cache"})


routes = [
    Route("/train", train_page, name="train_page"),
    Route("/train/config", config_fields, name="train_config_fields"),
    Route("/train/start", train_start, methods=["POST"], name="train_start"),
    Route("/train/cancel", train_cancel, methods=["POST"], name="train_cancel"),
    Route("/train/resume", train_resume, methods=["POST"], name="train_resume"),
    WebSocketRoute("/train/ws", train_ws, name="train_ws"),
    Route("/train/runs/{run_id}/previews/{name}", preview_audio, name="preview_audio"),
]
