"""Static files a browser keeps for a year.

Templates (`AssetVersions`, `CachedStatic`) link static files as
  `/static/css/app.css?v=<hash of its bytes>`. A request whose `v` is the
  file's current hash is answered with `Cache-Control: public,
  max-age=31536000, immutable`, so the next page load fetches only its HTML;
  one without `v` or with an old one gets `no-cache` (revalidated by its ETag,
  never kept stale).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import parse_qsl

from starlette.staticfiles import StaticFiles

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
VERSION_PARAM = "v"


class AssetVersions:
    """Short content hashes of the static files, recomputed when a file changes on disk."""

    def __init__(self, directory: Path):
        self.directory = directory.resolve()
        self._cache: dict[str, tuple[tuple[int, int], str]] = {}

    def version(self, path: str) -> str | None:
        """12 hex digits of the file's SHA-256, or None when there is no such file under the folder."""
        file = (self.directory / path).resolve()
        if not file.is_relative_to(self.directory):
            return None
        try:
            stat = file.stat()
        except OSError:
            return None
        key = (stat.st_mtime_ns, stat.st_size)
        cached = self._cache.get(path)
        if cached and cached[0] == key:
            return cached[1]
        digest = hashlib.sha256(file.read_bytes()).hexdigest()[:12]
        self._cache[path] = (key, digest)
        return digest

    def url_query(self, path: str) -> str:
        found = self.version(path)
        return f"?{VERSION_PARAM}={found}" if found else ""


class CachedStatic(StaticFiles):
    """StaticFiles whose answers say how long to keep them (see the module's docstring)."""

    def __init__(self, *, versions: AssetVersions, **kwargs):
        super().__init__(**kwargs)
        self.versions = versions

    async def get_response(self, path: str, scope):
        response = await super().get_response(path, scope)
        if response.status_code in (200, 304):
            asked = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"))).get(VERSION_PARAM)
            current = self.versions.version(path)
            response.headers["Cache-Control"] = IMMUTABLE if asked and asked == current else REVALIDATE
        return response
