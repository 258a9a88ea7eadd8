"""The front door: who may use the app, and from which page.

Pure ASGI middlewares, so they see WebSocket handshakes as well as HTTP:

* ProxyHeaders: behind a trusted reverse proxy, take the client's scheme and
  address (uvicorn's own middleware) and remember the Host the browser used
  (X-Forwarded-Host), for the same-origin check. Headers from anyone else
  are ignored.
* AccessToken: when a token is set, every request (pages, static files, the
  WebSocket) must carry it. `?token=` once sets an HttpOnly, SameSite=Strict
  cookie and redirects to the same URL without it; scripts may send
  `Authorization: Bearer <token>`. Anything else gets a plain 401 page with
  a box to paste the token, and never app data.
* LoopbackHostOnly: without a token (bound to 127.0.0.1), answer only to
  loopback names, so a web page that points its own name at 127.0.0.1 (DNS
  rebinding) cannot read or drive the app.
* SameOrigin: a page on another site cannot act: POST/PUT/PATCH/DELETE and
  WebSocket handshakes whose Origin (else Referer) is not this host, nor one
  of the `--allowed-origin`s, are refused (403), as is any that the browser
  labels `Sec-Fetch-Site: cross-site`.

Why static files too: one rule with no exceptions is easier to trust than an
allow-list, and nothing on the 401 page needs them.
"""
from __future__ import annotations

import hashlib
import hmac
import html
import ipaddress
import secrets
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.responses import HTMLResponse, Response

from . import security_headers as security

TOKEN_PARAM = "token"
MIN_TOKEN_CHARS = 8
COOKIE_MAX_AGE_S = 30 * 24 * 3600  # a phone on the LAN should not need the link every day
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
FORWARDED_HOST_KEY = "sda.forwarded_host"  # set in the scope by ProxyHeaders for a trusted proxy


def new_token() -> str:
    return secrets.token_urlsafe(24)


def check_token(token: str) -> str:
    """A usable access token, or ValueError saying why not."""
    if len(token) < MIN_TOKEN_CHARS:
        raise ValueError(f"The access token is too short; use at least {MIN_TOKEN_CHARS} characters "
                         "(or leave it out and sda makes one).")
    return token


def is_loopback(host: str) -> bool:
    """127.0.0.1, ::1, localhost: only this machine can connect."""
    host = (host or "").strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cookie_name(token: str) -> str:
    """Per token, so two sda servers on one host (cookies ignore ports) don't evict each other."""
    return "sda_token_" + hashlib.sha256(token.encode()).hexdigest()[:12]


def cookie_value(token: str) -> str:
    """Derived from the token: always cookie-safe, whatever characters the token has."""
    return hashlib.sha256(b"sda-cookie:" + token.encode()).hexdigest()


def _hostname(host: str) -> str:
    """'[::1]:8000' -> '::1', '127.0.0.1:8000' -> '127.0.0.1', 'studio' -> 'studio'."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def _cookies(scope) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in scope.get("headers", ()):
        if key == b"cookie":
            for part in value.decode("latin-1").split(";"):
                name, _, val = part.strip().partition("=")
                if name:
                    found.setdefault(name, val)
    return found


def _query(scope) -> list[tuple[str, str]]:
    return parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)


async def deny(scope, receive, send, status: int, heading: str, text: str, form: bool = False) -> None:
    """A plain page (no app data, no static files); for a WebSocket, the same as a denial response."""
    body = _PLAIN_PAGE.format(title=html.escape(heading), heading=html.escape(heading), text=html.escape(text),
                              form=_TOKEN_FORM if form else "", style=_PLAIN_STYLE)
    response = HTMLResponse(body, status_code=status,
                            headers={"Cache-Control": "no-store", "Content-Security-Policy": _PLAIN_CSP})
    if scope["type"] == "websocket":
        if "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 1008, "reason": heading})
            return
    await response(scope, receive, send)


_PLAIN_STYLE = ("body{font:16px/1.5 system-ui,sans-serif;background:#15171c;color:#e8e6e3;max-width:34rem;"
                "margin:12vh auto;padding:0 1.2rem}h1{font-size:1.4rem}input{font:inherit;padding:.4rem .6rem;"
                "width:100%;box-sizing:border-box;margin:.3rem 0 .8rem}button{font:inherit;padding:.4rem 1rem}"
                "p{color:#b9b6b0}")
# Its one inline <style>, allowed by its hash: the page works without static files (which need the token).
_PLAIN_CSP = security.content_security_policy((security.style_hash(_PLAIN_STYLE),))
_PLAIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · sda</title>
<style>{style}</style></head>
<body><h1>{heading}</h1><p>{text}</p>{form}</body></html>
"""
_TOKEN_FORM = """<form method="get"><label for="token">Access token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Open sda</button></form>"""


class ProxyHeaders:
    """Trust X-Forwarded-For/-Proto/-Host only from `trusted` proxies ("127.0.0.1", "10.0.0.0/8", "*").

    Wraps uvicorn's ProxyHeadersMiddleware (pass proxy_headers=False to uvicorn
    then), because that one rewrites the client address: afterwards nobody
    could tell whether X-Forwarded-Host came from the proxy or from anyone."""

    def __init__(self, app, trusted: str = "127.0.0.1"):
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        self.app = ProxyHeadersMiddleware(app, trusted_hosts=trusted)
        self.trusted_hosts = self.app.trusted_hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            if (client[0] if client else None) in self.trusted_hosts:
                forwarded = _header(scope, b"x-forwarded-host")
                if forwarded:
                    scope[FORWARDED_HOST_KEY] = forwarded.split(",")[0].strip()
        await self.app(scope, receive, send)


class AccessToken:
    def __init__(self, app, token: str, root_path: str = ""):
        if not token:
            raise ValueError("AccessToken needs a non-empty token.")
        self.app = app
        self.token = token.encode()
        self.cookie = cookie_name(token)
        self.cookie_value = cookie_value(token)
        self.cookie_path = root_path or "/"

    def _valid(self, candidate: str | None, expected: bytes | None = None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode("utf-8", "replace"),
                                                             expected or self.token)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        query = _query(scope)
        given = next((v for k, v in query if k == TOKEN_PARAM), None)
        if given is not None:
            if not self._valid(given):
                return await deny(scope, receive, send, 401, "Access token required",
                                  "That access token is not the right one. Use the link that `sda serve` printed, "
                                  "or paste the token it printed below.", form=True)
            if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
                return await self._welcome(scope, receive, send, query)
            return await self.app(scope, receive, send)
        if self._valid(_cookies(scope).get(self.cookie), self.cookie_value.encode()) or self._valid(_bearer(scope)):
            return await self.app(scope, receive, send)
        await deny(scope, receive, send, 401, "Access token required",
                   "This sda server asks for its access token. Open the link that `sda serve` printed "
                   "(it ends in ?token=…), or paste the token below.", form=True)

    async def _welcome(self, scope, receive, send, query) -> None:
        """Set the cookie, then go to the same URL without the token (so it is not bookmarked or shared)."""
        rest = urlencode([(k, v) for k, v in query if k != TOKEN_PARAM])
        root, path = scope.get("root_path", ""), scope["path"]
        location = (path if path.startswith(root) else root + path) + (f"?{rest}" if rest else "")
        location = "/" + location.lstrip("/")  # never "//other.host/...": that would leave this server
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        cookie = (f"{self.cookie}={self.cookie_value}; Path={self.cookie_path}; Max-Age={COOKIE_MAX_AGE_S}; "
                  f"HttpOnly; SameSite=Strict{secure}")
        headers = {"Set-Cookie": cookie, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
        if _header(scope, b"sec-fetch-site") == "cross-site":
            # Opened from a link on another site (a chat, a mail): browsers withhold
            # a SameSite=Strict cookie for the whole redirect chain, so an HTTP
            # redirect would land on the 401 page. A same-page refresh is ours.
            target = html.escape(location)
            body = (f'<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url={target}">'
                    f'<title>sda</title><p><a href="{target}">Continue to sda</a></p>')
            response: Response = HTMLResponse(body, headers=headers)
        else:
            response = Response(status_code=303, headers={**headers, "Location": location})
        await response(scope, receive, send)


def _bearer(scope) -> str | None:
    value = _header(scope, b"authorization")
    if value and value[:7].lower() == "bearer ":
        return value[7:].strip()
    return None


class LoopbackHostOnly:
    """Answer only requests addressed to a loopback name (or vouched for by a trusted proxy)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket") and FORWARDED_HOST_KEY not in scope:
            host = _header(scope, b"host") or ""
            if not is_loopback(_hostname(host)):
                return await deny(scope, receive, send, 403, "Refused: unknown host name",
                                  f"This sda server has no access token, so it only answers at 127.0.0.1 or "
                                  f"localhost, not at {host[:80] or 'an unnamed host'}. To reach it by another "
                                  "name or from another device, start it with --host 0.0.0.0 (it then asks for a "
                                  "token), or give it --token.")
        await self.app(scope, receive, send)


def _normal_host(netloc: str, scheme: str = "") -> str:
    """host[:port] in lower case, without the default port of the scheme."""
    netloc = netloc.strip().lower()
    for default in ((":80",) if scheme in ("http", "ws") else (":443",) if scheme in ("https", "wss")
                    else (":80", ":443")):
        if netloc.endswith(default):
            return netloc[: -len(default)]
    return netloc


class SameOrigin:
    """Refuse state-changing requests and WebSocket handshakes that another site started."""

    def __init__(self, app, allowed_origins: frozenset[str] = frozenset()):
        self.app = app
        self.allowed_origins = frozenset(allowed_origins)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" or (scope["type"] == "http" and scope["method"] not in SAFE_METHODS):
            reason = cross_site_reason(scope, self.allowed_origins)
            if reason:
                return await deny(scope, receive, send, 403, "Refused: request from another site", reason)
        await self.app(scope, receive, send)


def normalise_origin(url: str) -> str:
    """'HTTPS://Studio.example:443/' -> 'https://studio.example'; ValueError (a sentence) if it is no origin."""
    text = (url or "").strip()
    if text == "*":
        raise ValueError("--allowed-origin takes a page's address such as https://studio.example; '*' would let "
                         "every site on the web act here, so sda does not accept it.")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if (parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname or parts.username
            or parts.password or parts.path not in ("", "/") or parts.query or parts.fragment):
        raise ValueError(f"{text[:80]!r} is not an origin: give --allowed-origin the scheme, host and port a "
                         "browser shows, such as https://studio.example or http://192.168.1.20:8080.")
    scheme = parts.scheme.lower()
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    default = {"http": 80, "https": 443}[scheme]
    return f"{scheme}://{host}" + (f":{port}" if port and port != default else "")


def normalise_origins(urls) -> frozenset[str]:
    if isinstance(urls, str):
        urls = [urls]
    return frozenset(normalise_origin(u) for u in urls or ())


def parse_origin_list(text: str | None) -> list[str]:
    """$SDA_ALLOWED_ORIGINS: origins separated by commas or spaces."""
    return [part for part in (text or "").replace(",", " ").split() if part]


def _is_allowed(url: str, allowed: frozenset[str]) -> bool:
    if not allowed:
        return False
    try:
        return normalise_origin(_origin_of(url)) in allowed
    except ValueError:
        return False


def _split(url: str):
    """urlsplit, or None for what it cannot parse (a header is whatever the client sent)."""
    try:
        return urlsplit(url)
    except ValueError:  # e.g. "http://[::1"
        return None


def _origin_of(url: str) -> str:
    """The scheme://host[:port] part of a URL (a Referer is a full address); '' if it has none."""
    parts = _split(url)
    if parts is None or not parts.netloc:
        return ""
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def cross_site_reason(scope, allowed_origins: frozenset[str] = frozenset()) -> str | None:
    """Why this request looks cross-site (a sentence), or None when it is our own page (or not a browser).

    The Origin header decides; without one (older browsers' form posts), the
    Referer; `Sec-Fetch-Site: cross-site` or `same-site` is refused either way.
    A request with neither Origin nor Referer nor Sec-Fetch-Site did not come
    from a page in any current browser (they all send Origin with every POST
    and WebSocket handshake): it is a script or curl, and passes."""
    origin = _header(scope, b"origin")
    referer = _header(scope, b"referer") if origin is None else None
    fetch_site = (_header(scope, b"sec-fetch-site") or "").lower()
    host = scope.get(FORWARDED_HOST_KEY) or _header(scope, b"host") or ""
    claimed = origin if origin is not None else referer
    if claimed is not None and claimed != "null" and _is_allowed(claimed, allowed_origins):
        return None  # --allowed-origin: a page the operator vouches for
    hint = _proxy_hint(claimed)
    if fetch_site == "cross-site":
        return ("This request was sent by a page on another site, so sda refused it: only sda's own pages can "
                "change things here." + hint)
    if origin is None and referer is None:
        if fetch_site == "same-site":  # e.g. another app on this host, on another port
            return "This request was sent by a page of another app on this site, so sda refused it."
        return None  # not sent by a browser page (curl, scripts): nothing to forge
    if origin == "null":
        return "This request came from a page without an origin (a sandboxed frame or a local file), so sda refused it."
    sender = _origin_of(origin if origin is not None else referer)
    parts = _split(sender)
    if not sender or _normal_host(parts.netloc, parts.scheme) != _normal_host(host):
        shown = sender[:100] or "a page of unknown address"
        return (f"This request came from {shown}, not from this server ({host[:80] or 'unknown host'}), so sda "
                "refused it: only sda's own pages can change things here." + hint)
    if fetch_site == "same-site":
        return "This request was sent by a page of another app on this site, so sda refused it."
    return None


def _proxy_hint(claimed: str | None) -> str:
    """The advice for an operator whose reverse proxy hides the address the browser used."""
    named = ""
    sender = _origin_of(claimed) if claimed else ""
    if sender.startswith(("http://", "https://")):
        named = f" (--allowed-origin {sender[:100]}, if that is the address you typed)"
    return (" If you reach sda through a reverse proxy, make it pass the address you typed (nginx: "
            "proxy_set_header X-Forwarded-Host $http_host;) or, if it cannot, start sda with --allowed-origin "
            f"and that address{named}.")


def proxy_middleware(trusted_proxies: str | None) -> list:
    """Outermost: it must see the proxy's own address."""
    from starlette.middleware import Middleware

    return [Middleware(ProxyHeaders, trusted=trusted_proxies)] if trusted_proxies else []


def access_middleware(*, token: str | None, root_path: str = "", local_only: bool = False,
                      allowed_origins: frozenset[str] = frozenset()) -> list:
    """Token (when set; else, with `local_only`, loopback host names only), then the
    same-origin check; inside any prefix handling."""
    from starlette.middleware import Middleware

    if token:
        stack = [Middleware(AccessToken, token=token, root_path=root_path)]
    else:
        stack = [Middleware(LoopbackHostOnly)] if local_only else []
    return stack + [Middleware(SameOrigin, allowed_origins=frozenset(allowed_origins))]
