"""Run the web app with uvicorn: what `sda serve` calls.

    python -m sda_web.web.serve --port 8000 --data-dir ./sda-data --root-path /sda
"""
from __future__ import annotations

import argparse
import os
import sys
from urllib.parse import quote

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# Compression would run once per client per frame, undoing "render once, send
# to all"; the fragments are a few KB and this is a LAN app.
PER_MESSAGE_DEFLATE = False


def resolve_token(host: str, token: str | None = None) -> tuple[str | None, bool]:
    """(token, generated): --token, else $SDA_TOKEN, else a new one unless bound to loopback only."""
    # the web stack only when serving: `sda` parses its arguments without it
    from .middleware.access import check_token, is_loopback, new_token

    token = (token or os.environ.get("SDA_TOKEN") or "").strip() or None
    if token is not None:
        return check_token(token), False
    if is_loopback(host):
        return None, False
    return new_token(), True


def resolve_allowed_origins(given: list[str] | None = None) -> frozenset[str]:
    """--allowed-origin (repeatable), else $SDA_ALLOWED_ORIGINS; ValueError (a sentence) for a malformed one."""
    # the web stack only when serving: `sda` parses its arguments without it
    from .middleware.access import normalise_origins, parse_origin_list

    return normalise_origins(given or parse_origin_list(os.environ.get("SDA_ALLOWED_ORIGINS")))


def lan_address() -> str | None:
    """This machine's address on the local network, best effort (no packet is sent)."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            address = s.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    data_dir=None,
    root_path: str = "",
    proxy_headers: bool = True,
    forwarded_allow_ips: str | None = None,
    log_level: str = "warning",
    token: str | None = None,
    max_upload_mb: float | None = None,
    max_request_mb: float | None = None,
    allowed_origins: list[str] | None = None,
) -> None:
    """Print the address, then serve until interrupted.

    Behind a reverse proxy under a prefix, pass `root_path="/sda"`; proxy
    headers (X-Forwarded-Proto/For/Host) are trusted from `forwarded_allow_ips`
    (default: 127.0.0.1, or $FORWARDED_ALLOW_IPS). Bound to anything but
    loopback, every request needs the access token (`token`, else $SDA_TOKEN,
    else a new one, printed in the URL). `allowed_origins` (else $SDA_ALLOWED_ORIGINS, comma- or
    space-separated): pages at these origins may post here too, for a proxy that cannot pass the
    host the browser used."""
    import uvicorn

    # the web stack only when serving: `sda` parses its arguments without it
    from ..storage import resolve_data_dir
    from .app import create_app
    from .uploads import UploadLimits
    from .templating import normalise_root_path

    root_path = normalise_root_path(root_path)
    data_dir = resolve_data_dir(data_dir)
    limits = UploadLimits.from_mb(max_upload_mb, max_request_mb)
    token, generated = resolve_token(host, token)
    origins = resolve_allowed_origins(allowed_origins)
    trusted = (forwarded_allow_ips or os.environ.get("FORWARDED_ALLOW_IPS") or "127.0.0.1") if proxy_headers else None
    app = create_app(data_dir, root_path=root_path, access_token=token, trusted_proxies=trusted,
                     local_only=token is None, upload_limits=limits, allowed_origins=origins)
    _print_address(host, port, root_path, data_dir, token, generated, origins)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        root_path=root_path,
        proxy_headers=False,  # the app applies them itself (web/middleware/access.py ProxyHeaders), X-Forwarded-Host included
        log_level=log_level,
        ws="websockets-sansio",  # awaits the socket draining: a stalled client backs up only its own outbox
        ws_per_message_deflate=PER_MESSAGE_DEFLATE,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    try:
        uvicorn.Server(config).run()
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl+C after a graceful shutdown
        pass
    print("sda stopped.", flush=True)


def _print_address(host: str, port: int, root_path: str, data_dir, token: str | None, generated: bool,
                   origins: frozenset[str]) -> None:
    """Where to open the app (with its token), on this machine and on the network."""
    everywhere = host in ("0.0.0.0", "::", "")
    shown_host = "127.0.0.1" if everywhere else f"[{host}]" if ":" in host else host
    query = f"?token={quote(token, safe='')}" if token else ""
    print(f"sda is running at http://{shown_host}:{port}{root_path}/{query}  (data: {data_dir})", flush=True)
    if everywhere:
        lan = lan_address()
        where = f"http://{lan}:{port}{root_path}/{query}" if lan else "this machine's address"
        print(f"  listening on all interfaces ({host}); on your network, open {where}", flush=True)
    if generated:
        print("  the access token was generated for this session; pass --token or set SDA_TOKEN to keep one.",
              flush=True)
    if origins:
        print(f"  also accepting forms and live updates from pages at {', '.join(sorted(origins))}", flush=True)
    print("  press Ctrl+C to stop", flush=True)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `sda serve`, on `parser`: the one definition both `sda serve` and
    `python -m sda_web.web.serve` (what the tests launch) use."""
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--root-path", default="", help="sub-path when served behind a reverse proxy, e.g. /sda")
    parser.add_argument("--no-proxy-headers", dest="proxy_headers", action="store_false",
                        help="ignore X-Forwarded-* headers (by default they are trusted from --forwarded-allow-ips)")
    parser.add_argument("--forwarded-allow-ips", default=None,
                        help="proxy addresses whose headers are trusted (default: $FORWARDED_ALLOW_IPS or 127.0.0.1)")
    parser.add_argument("--log-level", default="warning", help=argparse.SUPPRESS)
    parser.add_argument("--token", default=None,
                        help="access token every browser must present (default: $SDA_TOKEN; generated and printed "
                             "when --host is not 127.0.0.1)")
    parser.add_argument("--max-upload-mb", type=float, default=None, help="largest sound file to accept (default 200)")
    parser.add_argument("--max-request-mb", type=float, default=None, help="largest upload in one go (default 2048)")
    parser.add_argument("--allowed-origin", dest="allowed_origins", action="append", default=None, metavar="URL",
                        help="also accept forms and live updates from pages at this origin, e.g. "
                             "https://studio.example, for a proxy that cannot pass the host the browser used "
                             "(repeatable; default: $SDA_ALLOWED_ORIGINS, comma-separated)")
    parser.add_argument("--data-dir", help="where datasets, runs and models live (default: $SDA_DATA_DIR or ./sda-data)")


def serve_from_args(args: argparse.Namespace) -> int:
    """Serve with parsed `add_serve_arguments` options; 2 with one sentence on stderr for a bad one."""
    try:
        serve(host=args.host, port=args.port, data_dir=args.data_dir, root_path=args.root_path,
              proxy_headers=args.proxy_headers,
              forwarded_allow_ips=args.forwarded_allow_ips, log_level=args.log_level, token=args.token,
              max_upload_mb=args.max_upload_mb, max_request_mb=args.max_request_mb,
              allowed_origins=args.allowed_origins)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sda_web.web.serve", description="Serve the sda web app.")
    add_serve_arguments(parser)
    return serve_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
