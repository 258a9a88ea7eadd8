"""Small helpers every route module uses."""
from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse


def get_runner(app: Starlette):
    """The app's one TrainingRunner, created on first use (import stays light)."""
    if app.state.runner is None:
        from ..training.runner import TrainingRunner

        app.state.runner = TrainingRunner(app.state.data_dir)
    return app.state.runner


def spawn(app: Starlette, coro) -> None:
    """Run `coro` in the background, holding a reference until it is done."""
    import asyncio

    task = asyncio.get_running_loop().create_task(coro)
    app.state.tasks.add(task)
    task.add_done_callback(app.state.tasks.discard)


def url(request: Request, route: str, /, **params) -> str:
    """Root-relative URL of a route, with the app's prefix."""
    return request.app.state.root_path + str(request.app.url_path_for(route, **params))


def render(request: Request, name: str, context: dict | None = None, status_code: int = 200) -> HTMLResponse:
    templates = request.app.state.templates
    return templates.TemplateResponse(request, name, context or {}, status_code=status_code)


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


async def not_found(request: Request, exc) -> HTMLResponse:
    status = getattr(exc, "status_code", 404)
    heading = "Not found" if status == 404 else "Not allowed"
    message = "There is nothing at this address." if status == 404 else "That action is not available here."
    return render(request, "error.html", {"heading": heading, "message": message, "back": url(request, "index")},
                  status_code=status)


def redirect(request: Request, route: str, /, **params) -> RedirectResponse:
    """POST/redirect/GET: 303 so the browser follows with a GET."""
    return RedirectResponse(url(request, route, **params), status_code=303)
