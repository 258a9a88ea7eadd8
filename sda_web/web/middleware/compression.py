"""Weight on the wire: gzip for text.

* Compression (`Compression`): an HTTP response of at least 500 bytes whose
  type is text (HTML pages and fragments, CSS, JS, SVG, JSON) is gzipped for a
  client that accepts it. Everything else passes untouched: audio, archives,
  partial (Range) answers, bodies already encoded, and the WebSocket (its
  frames are rendered once for every client; serve.py turns per-message
  deflate off). An allow-list, so a type added later is never squeezed by
  accident. Brotli would save a few KB more but needs a compiled package.
"""
from __future__ import annotations

import zlib

from starlette.datastructures import Headers, MutableHeaders

MIN_COMPRESS_BYTES = 500  # below this the gzip framing and a round of CPU buy nothing
COMPRESS_LEVEL = 6  # zlib's default; 9 saved 45 B (0.2%) of the first page's assets for 1.2x the CPU
TEXT_TYPES = ("text/", "application/javascript", "application/json", "image/svg+xml")


def is_text(content_type: str) -> bool:
    return content_type.partition(";")[0].strip().lower().startswith(TEXT_TYPES)


def accepts_gzip(accept_encoding: str) -> bool:
    """Accept-Encoding names gzip (or *) with a non-zero quality."""
    qualities = {}
    for item in accept_encoding.lower().split(","):
        coding, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if coding:
            qualities[coding.strip()] = q
    return qualities.get("gzip", qualities.get("x-gzip", qualities.get("*", 0.0))) > 0


class Compression:
    def __init__(self, app, minimum_size: int = MIN_COMPRESS_BYTES, level: int = COMPRESS_LEVEL):
        self.app, self.minimum_size, self.level = app, minimum_size, level

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":  # the WebSocket, lifespan
            return await self.app(scope, receive, send)
        if not accepts_gzip(Headers(scope=scope).get("accept-encoding", "")):
            return await self.app(scope, receive, _vary_on_text(send))
        await self.app(scope, receive, _GzipSend(send, self.minimum_size, self.level))


def _vary_on_text(send):
    """Uncompressed, but a cache must still know the answer depends on Accept-Encoding."""
    async def wrapped(message):
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            if is_text(headers.get("content-type", "")):
                headers.add_vary_header("Accept-Encoding")
        await send(message)
    return wrapped


class _GzipSend:
    """The `send` of one response: holds the start until the first body says whether to compress."""

    def __init__(self, send, minimum_size: int, level: int):
        self.send, self.minimum_size, self.level = send, minimum_size, level
        self.start = None
        self.compressor = None  # set once compressing
        self.passthrough = False

    async def __call__(self, message):
        kind = message["type"]
        if kind == "http.response.start":
            headers = MutableHeaders(scope=message)
            self.passthrough = (not is_text(headers.get("content-type", "")) or "content-encoding" in headers
                                or message["status"] in (204, 206, 304)
                                or "no-transform" in headers.get("cache-control", ""))
            if self.passthrough:
                return await self.send(message)
            headers.add_vary_header("Accept-Encoding")
            self.start = message
            return
        if self.passthrough or kind != "http.response.body":
            if self.start is not None:  # e.g. pathsend or trailers before any body: send as it is
                start, self.start = self.start, None
                await self.send(start)
            return await self.send(message)
        body, more = message.get("body", b""), message.get("more_body", False)
        if self.start is not None:
            start, self.start = self.start, None
            if not more and len(body) < self.minimum_size:
                self.passthrough = True
                await self.send(start)
                return await self.send(message)
            self.compressor = zlib.compressobj(self.level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip framing
            headers = MutableHeaders(scope=start)
            headers["Content-Encoding"] = "gzip"
            etag = headers.get("etag")
            if etag and etag.startswith('"'):  # other bytes than the identity answer: only weakly the same
                headers["ETag"] = "W/" + etag
            packed = self._pack(body, more)
            if more:
                del headers["Content-Length"]
            else:
                headers["Content-Length"] = str(len(packed))
            await self.send(start)
            return await self.send({**message, "body": packed})
        await self.send({**message, "body": self._pack(body, more)})

    def _pack(self, body: bytes, more: bool) -> bytes:
        packed = self.compressor.compress(body)
        return packed + self.compressor.flush(zlib.Z_SYNC_FLUSH if more else zlib.Z_FINISH)
