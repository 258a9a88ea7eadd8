"""Bounds on what a request may carry: small forms, known query values.

Every handler reads its form through `read_form` (a size cap, no file parts,
few fields) and its query parameters through `query_choice` / `query_text`,
so a bad or huge value becomes BadInput, answered with 422 (or 413) and a
sentence, never a 500. Parameters a route does not know are ignored (the
no-JS "Apply preset" button sends the whole settings form as a query).
"""
from __future__ import annotations

import re

from starlette.exceptions import HTTPException
from starlette.requests import Request

MAX_FORM_BYTES = 64 * 1024
MAX_FORM_FIELDS = 64
MAX_QUERY_VALUE = 200


class BadInput(ValueError):
    """A request value out of bounds; `str(exc)` is the sentence to show."""

    def __init__(self, message: str, status_code: int = 422):
        super().__init__(message)
        self.status_code = status_code


async def read_form(request: Request) -> dict[str, str]:
    """The submitted form as {name: text} (the last value wins), bounded in size and count."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_FORM_BYTES:
        raise BadInput(f"The form was too large (over {MAX_FORM_BYTES // 1024} KB); nothing was changed.", 413)
    try:
        form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS, max_part_size=MAX_FORM_BYTES)
    except HTTPException as exc:  # Starlette's answer to a malformed or oversized form
        raise BadInput(f"The form could not be read ({exc.detail}); nothing was changed.") from None
    try:
        return {key: str(value) for key, value in form.multi_items() if isinstance(value, str)}
    finally:
        await form.close()


def query_text(request: Request, name: str, *, pattern: str | None = None, max_length: int = MAX_QUERY_VALUE,
               label: str | None = None) -> str | None:
    """A query value (None when absent), at most `max_length` characters, matching `pattern` if given."""
    value = request.query_params.get(name)
    if value is None:
        return None
    label = label or name
    if len(value) > max_length:
        raise BadInput(f"The {label} in the address is too long (at most {max_length} characters).")
    if pattern is not None and value and not re.fullmatch(pattern, value):
        raise BadInput(f"The {label} in the address ({value[:40]!r}) is not valid.")
    return value


def query_choice(request: Request, name: str, choices, *, label: str | None = None) -> str | None:
    """A query value that must be one of `choices` ('' counts as absent)."""
    value = query_text(request, name, label=label)
    if not value:
        return None
    if value not in choices:
        shown = ", ".join(c for c in choices if c)
        raise BadInput(f"The {label or name} in the address must be one of: {shown} (not {value[:40]!r}).")
    return value


def query_flag(request: Request, name: str, *, label: str | None = None) -> bool:
    """A checkbox-style flag: 'on' (or 'true', '1'), else off; anything else is refused."""
    value = query_choice(request, name, ("on", "off", "true", "false", "1", "0"), label=label)
    return value in ("on", "true", "1")
