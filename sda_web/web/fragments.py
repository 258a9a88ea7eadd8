"""HTML fragments of the Train tab, rendered from a RunView.

Pure functions of (environment, view): no I/O, no request. The same partial
templates are included by the full Train page, so what a reload shows and what
the WebSocket pushes are the same markup. Each fragment is one or more
top-level elements with an id; the htmx ws extension swaps each into the
element with the same id.
"""
from __future__ import annotations

import jinja2

from ..training.events import PreviewEvent
from .chart import chart_fragment
from .view import RunView


def _render(env: jinja2.Environment, name: str, **context) -> str:
    return env.get_template(name).render(**context)


def chart(env: jinja2.Environment, view: RunView, log_scale: bool = False) -> str:
    history = view.history
    sign = view.memorisation()
    return chart_fragment(
        [m.epoch for m in history],
        [m.train_loss for m in history],
        [m.val_loss for m in history],
        log_scale=log_scale,
        memorising_from=sign.began_epoch if sign else None,
    )  # long runs are downsampled by the chart, so the pushed fragment stays a few KB


def chart_options(env: jinja2.Environment, log_scale: bool = False) -> str:
    return _render(env, "partials/chart_options.html", log_scale=log_scale)


def stats(env: jinja2.Environment, view: RunView) -> str:
    return _render(env, "partials/stats.html", view=view)


def progress(env: jinja2.Environment, view: RunView) -> str:
    return _render(env, "partials/progress.html", view=view)


def controls(env: jinja2.Environment, view: RunView) -> str:
    return _render(env, "partials/controls.html", view=view)


def outcome(env: jinja2.Environment, view: RunView) -> str:
    return _render(env, "partials/outcome.html", view=view)


def previews(env: jinja2.Environment, view: RunView) -> str:
    """The whole preview list (replaces what the client has)."""
    return _render(env, "partials/previews.html", view=view)


def preview_appended(env: jinja2.Environment, view: RunView, event: PreviewEvent) -> str:
    """One new preview, appended to #previews on every client."""
    return _render(env, "partials/preview_append.html", view=view, preview=event)


def finished(env: jinja2.Environment, view: RunView) -> str:
    """The end of a run: banner, controls flipped back, final stats and progress."""
    return outcome(env, view) + controls(env, view) + stats(env, view) + progress(env, view)


def state(env: jinja2.Environment, view: RunView, log_scale: bool = False) -> str:
    """Everything the live part of the Train tab shows, sent on every (re)connect."""
    return (
        chart_options(env, log_scale)
        + chart(env, view, log_scale)
        + stats(env, view)
        + progress(env, view)
        + controls(env, view)
        + outcome(env, view)
        + previews(env, view)
    )


def queue(env: jinja2.Environment, view) -> str:
    """The queue panel (a QueueView): every run training, waiting, failed to start or resumable."""
    return _render(env, "partials/queue.html", q=view)
