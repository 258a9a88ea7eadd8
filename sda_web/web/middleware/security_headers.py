"""Headers a browser enforces, on every HTTP response the app sends.

* Content-Security-Policy: scripts, styles, images, media and connections
  only from this server (`'self'` covers its own ws:/wss: in CSP Level 3);
  no inline script, no inline style, no eval; no plugin; forms post only here;
  no page may frame the app (`frame-ancestors 'none'`, with X-Frame-Options for
  browsers that predate it). htmx runs under it with `allowEval: false`
  (templates/base.html); the few behaviours that were `hx-on` attributes live
  in static/js/app.js.
* X-Content-Type-Options: nosniff, Referrer-Policy: same-origin (our own
  pages still send a Referer, the same-origin check's fallback; other sites
  see none), Cross-Origin-Opener-Policy and -Resource-Policy: same-origin (no
  other site holds a handle on our window or embeds our sounds and pictures).

A response that sets one of these itself keeps its own (access.deny's plain
pages allow their one inline <style> by its hash; the token redirect sends no
Referer at all).
"""
from __future__ import annotations

import base64
import hashlib

from starlette.datastructures import MutableHeaders


def style_hash(css: str) -> str:
    """The CSP source that allows exactly this inline <style> element's text."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(css.encode()).digest()).decode() + "'"


def content_security_policy(style_sources: tuple[str, ...] = ()) -> str:
    directives = {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": " ".join(("'self'", *style_sources)),
        "img-src": "'self'",
        "media-src": "'self'",
        "connect-src": "'self'",  # the live WebSocket is on this server: 'self' matches its ws:/wss:
        "object-src": "'none'",
        "base-uri": "'none'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


CSP = content_security_policy()
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class SecurityHeaders:
    """Outermost: it also dresses the 500 page and the guard's refusals."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
