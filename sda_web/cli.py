"""`sda`: the command line. serve | train | demo-data.

Heavy imports (torch, the web stack) happen inside the command that needs them.
"""
from __future__ import annotations

import argparse
import queue
import sys
from pathlib import Path

from .storage import resolve_data_dir


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, OSError) as exc:  # our errors are clear sentences
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sda", description="Train a small generative audio model on your own sounds.")
    sub = parser.add_subparsers(dest="command")

    def data_dir_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", help="where datasets, runs and models live (default: $SDA_DATA_DIR or ./sda-data)")

    serve = sub.add_parser("serve", help="run the web app")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--root-path", default="", help="sub-path when served behind a reverse proxy, e.g. /sda")
    serve.add_argument("--no-proxy-headers", dest="proxy_headers", action="store_false",
                       help="ignore X-Forwarded-* headers (by default they are trusted from --forwarded-allow-ips)")
    serve.add_argument("--forwarded-allow-ips", default="127.0.0.1", help="proxy addresses whose headers are trusted")
    data_dir_arg(serve)
    serve.set_defaults(handler=_cmd_serve)

    demo = sub.add_parser("demo-data", help="write the built-in synthetic demo sounds to a folder")
    demo.add_argument("folder", type=Path)
    demo.add_argument("--count", type=int, default=24)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=_cmd_demo)

    train = sub.add_parser("train", help="train a model on a folder of sounds (or an imported dataset)")
    train.add_argument("source", help="a folder of sound files, or the name of an imported dataset")
    train.add_argument("--preset", default="balanced", help="conservative | balanced | aggressive")
    train.add_argument("--epochs", type=int, help="max epochs (default: sized to the dataset)")
    train.add_argument("--lr", "--learning-rate", dest="learning_rate", type=float)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--dropout", type=float)
    train.add_argument("--weight-decay", type=float)
    train.add_argument("--kl-weight-max", type=float)
    train.add_argument("--seed", type=int)
    train.add_argument("--name", help="dataset name (default: the folder's name)")
    train.add_argument("--resume", action="store_true", help="continue the latest run on this dataset")
    train.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    data_dir_arg(train)
    train.set_defaults(handler=_cmd_train)
    return parser


def _cmd_serve(args) -> int:
    from .web.serve import serve

    serve(host=args.host, port=args.port, data_dir=resolve_data_dir(args.data_dir), root_path=args.root_path,
          proxy_headers=args.proxy_headers, forwarded_allow_ips=args.forwarded_allow_ips)
    return 0


def _cmd_demo(args) -> int:
    from .audio.demo import write_demo_sounds

    paths = write_demo_sounds(args.folder, count=args.count, seed=args.seed)
    print(f"Wrote {len(paths)} demo sounds to {args.folder}")
    return 0


def _cmd_train(args) -> int:
    from .datasets import DatasetError, import_folder, load_dataset
    from .training import TrainingRunner, get_adaptive_config, latest_resumable_run

    data_dir = resolve_data_dir(args.data_dir)
    source = Path(args.source)
    if source.is_dir():
        manifest = import_folder(data_dir, source, name=args.name, progress=_import_progress)
        _clear_line()
        print(f"Dataset {manifest.name!r}: {manifest.file_count} usable files, {manifest.total_duration_s:.1f} s of audio.")
        if manifest.already_present:
            print(f"  {len(manifest.already_present)} files were already in the dataset.")
        for rejected in manifest.rejected:
            print(f"  skipped {rejected.name}: {rejected.reason}")
    else:
        try:
            manifest = load_dataset(data_dir, args.name or args.source)
        except DatasetError:
            raise DatasetError(f"{args.source!r} is neither a folder nor an imported dataset.") from None

    runner = TrainingRunner(data_dir)
    events: queue.Queue = queue.Queue()
    if args.resume:
        run = latest_resumable_run(data_dir, manifest.name)
        if run is None:
            raise DatasetError(f"Dataset {manifest.name!r} has no run with a checkpoint to resume; train without --resume first.")
        runner.resume(run.run_id, events.put, epochs=args.epochs, device=args.device)
        print(f"Resuming run {run.run_id} from epoch {run.epochs_done} (of {args.epochs or run.total_epochs}).")
    else:
        config = get_adaptive_config(manifest.file_count, args.preset).with_overrides(
            epochs=args.epochs, learning_rate=args.learning_rate, batch_size=args.batch_size,
            dropout=args.dropout, weight_decay=args.weight_decay, kl_weight_max=args.kl_weight_max, seed=args.seed,
        )
        run_id = runner.start(manifest.name, config, events.put, device=args.device)
        print(f"Training run {run_id}: {config.epochs} epochs, preset {config.preset}, "
              f"learning rate {config.learning_rate:g}, batch {config.batch_size}.")
    from .cli_progress import follow_run

    return follow_run(runner, events, data_dir, manifest.name)


def _import_progress(done: int, total: int) -> None:
    if sys.stderr.isatty():
        print(f"\rChecking files {done}/{total}", end="", file=sys.stderr, flush=True)


def _clear_line() -> None:
    if sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
