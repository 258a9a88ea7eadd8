"""Small helpers every route module uses."""
from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

from .input_checks import BadInput


def spawn(app: Starlette, coro) -> None:
    """Run `coro` in the background, holding a reference until it is done."""
    task = asyncio.get_running_loop().create_task(coro)
    app.state.tasks.add(task)
    task.add_done_callback(app.state.tasks.discard)


async def cancel_task(task) -> None:
    """Cancel a background task and wait until it has stopped."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


def url(request: Request, route: str, /, **params) -> str:
    """Root-relative URL of a route, with the app's prefix."""
    return request.app.state.root_path + str(request.app.url_path_for(route, **params))


def render(request: Request, name: str, context: dict | None = None, status_code: int = 200) -> HTMLResponse:
    templates = request.app.state.templates
    return templates.TemplateResponse(request, name, context or {}, status_code=status_code)


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


_HTTP_ERRORS = {
    400: ("Bad request", "The request could not be read; go back and try again."),
    404: ("Not found", "There is nothing at this address."),
    405: ("Not allowed", "That action is not available here."),
    413: ("Too large", "The request was too large."),
}


async def not_found(request: Request, exc) -> HTMLResponse:
    """404, 405 and the other HTTP errors Starlette raises, as a page (or a notice for htmx)."""
    status = getattr(exc, "status_code", 404)
    heading, message = _HTTP_ERRORS.get(status, ("Something went wrong", "That request could not be handled."))
    detail = getattr(exc, "detail", None)
    if status in (400, 413) and detail and detail != heading:
        message = f"{message} ({detail})"
    return _error(request, heading, message, status)


async def bad_input(request: Request, exc) -> HTMLResponse:
    """A BadInput (web/input_checks.py) no handler caught itself: 422/413 with its sentence."""
    return _error(request, "Please check that value", str(exc), getattr(exc, "status_code", 422))


def _error(request: Request, heading: str, message: str, status: int) -> HTMLResponse:
    if is_htmx(request):
        return render(request, "partials/notice.html", {"message": message}, status_code=status)
    return render(request, "error.html", {"heading": heading, "message": message, "back": url(request, "index")},
                  status_code=status)


def error_handlers() -> dict:
    return {400: not_found, 404: not_found, 405: not_found, 413: not_found, BadInput: bad_input}


def redirect(request: Request, route: str, /, **params) -> RedirectResponse:
    """POST/redirect/GET: 303 so the browser follows with a GET."""
    return RedirectResponse(url(request, route, **params), status_code=303)
