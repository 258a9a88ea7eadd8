"""One Jinja environment per app, with a `url()` helper that respects root_path.

Every link, form action, static URL and the WebSocket path is written
root-relative (`/sda/train`, not `http://host/sda/train`), so the same page
works on the LAN and behind a reverse proxy that serves the app under a prefix.
Fragments pushed over the WebSocket are rendered outside any request, so the
helper takes the prefix from the app, not from a request.
"""
from __future__ import annotations

from pathlib import Path

import jinja2
from starlette.routing import Router
from starlette.templating import Jinja2Templates

from .uploads import fmt_size

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATES_DIR = REPO_ROOT / "templates"
STATIC_DIR = REPO_ROOT / "static"


def check_assets() -> None:
    """templates/ and static/ live beside the package (the project's fixed layout),
    so the app runs from a source checkout (`make setup` installs it editable)."""
    missing = [p.name for p in (TEMPLATES_DIR, STATIC_DIR) if not p.is_dir()]
    if missing:
        raise RuntimeError(f"sda-web's {' and '.join(missing)} folder(s) are missing next to the package; "
                           "run it from a source checkout installed with `make setup` (pip install -e .).")


def normalise_root_path(root_path: str | None) -> str:
    """'' or '/prefix' (leading slash, no trailing slash)."""
    root_path = (root_path or "").strip()
    if not root_path or root_path == "/":
        return ""
    return "/" + root_path.strip("/")


def fmt_duration(seconds: float | None) -> str:
    """42 s, 3:07, 1:02:03."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def fmt_number(value: float | None) -> str:
    """Compact, unambiguous numbers for form fields and stats: 0.001, 1e-05, 0.25."""
    if value is None:
        return ""
    return f"{value:g}"


def fmt_lr(value: float | None) -> str:
    """Learning rates to 3 significant digits: 0.001, 0.000538, 2.5e-05."""
    return "—" if value is None else f"{value:.3g}"


def fmt_loss(value: float | None) -> str:
    if value is None or value != value:
        return "—"
    return f"{value:.4f}" if 0.01 <= abs(value) < 1e5 else f"{value:.3g}"


def make_templates(router: Router, root_path: str, versions=None) -> Jinja2Templates:
    """`versions` (static_files.AssetVersions): static URLs carry their content hash, so browsers may keep them."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=jinja2.select_autoescape(("html", "xml", "svg")),
        trim_blocks=True,
        lstrip_blocks=True,
    )

    def url(route: str, /, **params) -> str:
        return root_path + str(router.url_path_for(route, **params))

    def static(path: str) -> str:
        return url("static", path=path) + (versions.url_query(path) if versions else "")

    env.globals.update(url=url, static=static, root_path=root_path)
    env.filters.update(size=fmt_size, duration=fmt_duration, num=fmt_number, loss=fmt_loss, lr=fmt_lr, basename=lambda p: Path(str(p)).name)
    return Jinja2Templates(env=env)
