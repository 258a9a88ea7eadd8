"""Run the web app with uvicorn: what `sda serve` calls.

    python -m sda_web.web.serve --port 8000 --data-dir ./sda-data --root-path /sda
"""
from __future__ import annotations

import argparse
import sys

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# Compression would run once per client per frame, undoing "render once, send
# to all"; the fragments are a few KB and this is a LAN app.
PER_MESSAGE_DEFLATE = False


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    data_dir=None,
    root_path: str = "",
    proxy_headers: bool = True,
    forwarded_allow_ips: str | None = None,
    log_level: str = "warning",
) -> None:
    """Print the address, then serve until interrupted.

    Behind a reverse proxy under a prefix, pass `root_path="/sda"`; uvicorn's
    proxy headers (X-Forwarded-Proto/For) are trusted from `forwarded_allow_ips`
    (default: uvicorn's, i.e. 127.0.0.1 or $FORWARDED_ALLOW_IPS)."""
    import uvicorn

    from ..storage import resolve_data_dir
    from .app import create_app
    from .templating import normalise_root_path

    root_path = normalise_root_path(root_path)
    data_dir = resolve_data_dir(data_dir)
    app = create_app(data_dir, root_path=root_path)
    shown_host = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::"):
        shown_host = "127.0.0.1"
    print(f"sda is running at http://{shown_host}:{port}{root_path}/  (data: {data_dir})", flush=True)
    if host in ("0.0.0.0", "::"):
        print(f"  listening on all interfaces ({host}); other devices on your network can use this machine's address.",
              flush=True)
    print("  press Ctrl+C to stop", flush=True)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        root_path=root_path,
        proxy_headers=proxy_headers,
        forwarded_allow_ips=forwarded_allow_ips,
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sda_web.web.serve", description="Serve the sda web app.")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--root-path", default="")
    parser.add_argument("--no-proxy-headers", action="store_true")
    parser.add_argument("--forwarded-allow-ips", default=None)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.data_dir, args.root_path, proxy_headers=not args.no_proxy_headers,
          forwarded_allow_ips=args.forwarded_allow_ips, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
