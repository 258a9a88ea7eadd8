"""The Starlette application: routes per tab, one live hub, the training queue's runner.

    app = create_app("./sda-data", root_path="/sda")

Nothing here imports torch: the runner imports it in its own thread when the
first run starts, so the server answers its first request at once.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Router

from ..storage import resolve_data_dir
from . import routes_data, routes_pages, routes_train
from . import routes_generate, routes_library  # the Generate and Library tabs
from ..training.devices import training_devices
from .hub import LiveHub
from .queue_runner import QueueRunner
from .uploads import ImportJobs, UploadLimits
from .common import error_handlers
from .middleware.security_headers import SecurityHeaders
from .templating import STATIC_DIR, check_assets, make_templates, normalise_root_path
from .middleware import access as guard
from .middleware.compression import Compression
from .static_files import AssetVersions, CachedStatic


def create_app(data_dir: str | Path | None = None, root_path: str = "", *, runner=None, runners: dict | None = None,
               access_token: str | None = None, trusted_proxies: str | None = None, local_only: bool = False,
               upload_limits: UploadLimits | None = None, allowed_origins: Iterable[str] = ()) -> Starlette:
    """Build the app for `data_dir` (else $SDA_DATA_DIR, else ./sda-data).

    `root_path` is the prefix a reverse proxy serves the app under ("/sda");
    pass the same value to uvicorn (serve() does). `runner` replaces the
    TrainingRunners of the queue with one runner (tests use a scripted one); `runners`
    (device -> runner) with one per device (a test's stand-in for several GPUs). `access_token`: every request
    must carry it (web/middleware/access.py); without one, `local_only` answers only to
    loopback host names; `trusted_proxies`: addresses whose X-Forwarded-*
    headers are believed (then give uvicorn proxy_headers=False); `allowed_origins`: pages at these
    origins ("https://studio.example") may post here too, for a proxy that cannot pass the host the
    browser used."""
    check_assets()
    data_dir = resolve_data_dir(data_dir)
    root_path = normalise_root_path(root_path)
    allowed_origins = guard.normalise_origins(allowed_origins)
    versions = AssetVersions(STATIC_DIR)

    routes = [
        *routes_pages.routes,
        *routes_data.routes,
        *routes_train.routes,
        *routes_generate.routes, *routes_library.routes,
        Mount("/static", app=CachedStatic(directory=str(STATIC_DIR), versions=versions), name="static"),
    ]
    templates = make_templates(Router(routes=routes), root_path, versions)
    hub = LiveHub(templates.env)

    # ---- the front door (issue 5): proxy headers, prefix, access token, same-origin; outermost first
    # (SecurityHeaders sits outside all of these: see SdaApp)
    middleware = [
        *guard.proxy_middleware(trusted_proxies),
        Middleware(Compression),
        *([Middleware(PrefixTolerant, root_path=root_path)] if root_path else []),
        *guard.access_middleware(token=access_token, root_path=root_path, local_only=local_only,
                                 allowed_origins=allowed_origins),
    ]
    # ----
    app = SdaApp(routes=routes, lifespan=_lifespan, exception_handlers=error_handlers(), middleware=middleware)
    app.state.data_dir = data_dir
    app.state.root_path = root_path
    app.state.templates = templates
    app.state.hub = hub
    app.state.queue_runner = QueueRunner(app, training_devices(), runners=runners or ({"cpu": runner} if runner else None))
    app.state.imports = ImportJobs()
    app.state.upload_limits = upload_limits or UploadLimits()
    app.state.tasks = set()
    hub.on_finished(lambda view: routes_train.after_run(app, view))
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette):
    """Start the live hub and the training queue; on shutdown, stop what trains (checkpointed: it
    can resume later), let imports finish, stop the hub."""
    app.state.start_lock = asyncio.Lock()
    await app.state.hub.start()
    await app.state.queue_runner.start()
    try:
        yield
    finally:
        await app.state.queue_runner.stop()
        await app.state.imports.wait_all()
        await app.state.hub.stop()


class SdaApp(Starlette):
    """Starlette with the browser's security headers outside everything, its 500 page included
    (Starlette's ServerErrorMiddleware sits outside the user middleware)."""

    def build_middleware_stack(self):
        return SecurityHeaders(super().build_middleware_stack())


class PrefixTolerant:
    """Serve under `root_path` whether or not the reverse proxy strips the prefix.

    uvicorn's --root-path assumes the proxy strips it (/sda/train arrives as
    /train); a proxy that forwards /sda/train unchanged, or a browser talking
    to the server directly, would otherwise get 404s."""

    def __init__(self, app, root_path: str):
        self.app, self.root_path = app, root_path

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            given, path = scope.get("root_path", ""), scope["path"]
            rest = path[len(given):] if given and path.startswith(given) else path
            if rest == self.root_path or rest.startswith(self.root_path + "/"):
                rest = rest[len(self.root_path):] or "/"
            scope = {**scope, "root_path": self.root_path, "path": self.root_path + rest}
        await self.app(scope, receive, send)
