"""`sda`: the command line. serve | train | queue | demo-data | generate | transform | models | export-model | import-model.

Heavy imports (torch, the web stack) happen inside the command that needs them.
"""
from __future__ import annotations

import argparse
import queue
import sys
from pathlib import Path

from .storage import resolve_data_dir
from .web.serve import add_serve_arguments, serve_from_args  # argparse only: no web stack yet


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
    serve = sub.add_parser("serve", help="run the web app")
    add_serve_arguments(serve)
    serve.set_defaults(handler=_cmd_serve)
    _add_demo_data(sub)
    _add_train(sub)
    _add_generate(sub)
    _add_transform(sub)
    _add_model_transfer(sub)
    _add_listings(sub)
    return parser


def _data_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="where datasets, runs and models live (default: $SDA_DATA_DIR or ./sda-data)")


def _add_demo_data(sub) -> None:
    demo = sub.add_parser("demo-data", help="write the built-in synthetic demo sounds to a folder")
    demo.add_argument("folder", type=Path)
    demo.add_argument("--count", type=int, default=24)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=_cmd_demo)


def _add_train(sub) -> None:
    train = sub.add_parser("train", help="train a model on a folder of sounds (or an imported dataset)")
    train.add_argument("source", help="a folder of sound files, or the name of an imported dataset")
    train.add_argument("--preset", default="balanced", help="conservative | balanced | aggressive")
    train.add_argument("--epochs", type=int, help="max epochs (default: sized to the dataset)")
    train.add_argument("--lr", "--learning-rate", dest="learning_rate", type=float)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--dropout", type=float)
    train.add_argument("--weight-decay", type=float)
    train.add_argument("--kl-weight-max", type=float)
    train.add_argument("--attribute-weight", type=float,
                       help="how strongly training keeps latent dimensions in order of brightness, loudness, decay and "
                            "pitch, which gives those sliders (default 0.1; 0: without)")
    train.add_argument("--seed", type=int)
    train.add_argument("--patience", type=int,
                       help="stop after this many epochs without a new best validation loss "
                            "(0: train to the end; default: set by the preset)")
    train.add_argument("--from", dest="start_from", metavar="MODEL",
                       help="start from the weights of a model in the library (name or id, or \"latest\") "
                            "instead of from scratch")
    train.add_argument("--name", help="dataset name (default: the folder's name)")
    train.add_argument("--resume", action="store_true", help="continue the latest run on this dataset")
    train.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    _data_dir_arg(train)
    train.set_defaults(handler=_cmd_train)


def _add_sound_options(p: argparse.ArgumentParser, out_help: str) -> None:
    """What generate and transform share: controls, seed, output format and place, device."""
    p.add_argument("--control", action="append", default=[], metavar="LABEL=VALUE",
                   help="move a sound control, in standard deviations (-3 to 3), e.g. brightness=+1.5")
    p.add_argument("--seed", type=int, help="same seed and settings -> the same sounds (default: random)")
    p.add_argument("--format", default="wav", help="wav | flac")
    p.add_argument("--bits", default="16", help="16 | 24")
    p.add_argument("--rate", default="model", help="model | 44100 | 48000")
    p.add_argument("--out", type=Path, help=out_help)
    p.add_argument("--device", default="cpu", help="cpu | auto | cuda | mps")
    _data_dir_arg(p)


def _add_generate(sub) -> None:
    generate = sub.add_parser("generate", help="make new sounds with a trained model")
    generate.add_argument("model", help='a model name or id (see `sda models`), or "latest"')
    generate.add_argument("--duration", type=float, default=None,
                          help="seconds per sound (0.1 to 60; default: the typical length of the model's sounds)")
    generate.add_argument("-n", "--variations", type=int, default=1, help="how many variations (1 to 8)")
    generate.add_argument("--variation", dest="variation_amount", type=float, default=1.0,
                          help="how far each variation wanders from the centre (0 to 2; default 1)")
    generate.add_argument("--blend", nargs=3, metavar=("FILE_A", "FILE_B", "AMOUNT"),
                          help="start between two sounds (AMOUNT 0 = FILE_A, 1 = FILE_B): each a sound of the "
                               "model's dataset by name, or any sound file by its path (kept in the library)")
    _add_sound_options(generate, "write the files to this folder (default: keep them in the library)")
    generate.set_defaults(handler=_cmd_generate)


def _add_transform(sub) -> None:
    transform = sub.add_parser("transform", help="put your own sounds through a trained model")
    transform.add_argument("model", help='a model name or id (see `sda models`), or "latest"')
    transform.add_argument("files", nargs="+", type=Path, metavar="FILE", help="sound files (up to 60 s each)")
    transform.add_argument("--variation", dest="variation_amount", type=float, default=0.3, metavar="X",
                           help="how far the result wanders from the input (0 to 2; default 0.3; "
                                "0 with no control = the model's plain reconstruction)")
    _add_sound_options(transform, "write the files to this folder, named after the inputs (default: keep them in "
                                  "the library, with the sounds they came from)")
    transform.set_defaults(handler=_cmd_transform)


def _add_model_transfer(sub) -> None:
    export = sub.add_parser("export-model", help="write a trained model to one zip, to use it elsewhere")
    export.add_argument("model", help='a model name or id (see `sda models`), or "latest"')
    export.add_argument("out", type=Path, metavar="OUT.zip", help="the zip to write (a folder: a file named after the model in it)")
    _data_dir_arg(export)
    export.set_defaults(handler=_cmd_export_model)
    import_ = sub.add_parser("import-model", help="add a model exported from sda-web (here or elsewhere) to the library")
    import_.add_argument("zip", type=Path, metavar="FILE.zip")
    _data_dir_arg(import_)
    import_.set_defaults(handler=_cmd_import_model)


def _add_listings(sub) -> None:
    queue_ = sub.add_parser("queue", help="list the training runs that train and wait on this data folder's server")
    queue_.add_argument("--json", action="store_true", help="print JSON")
    _data_dir_arg(queue_)
    queue_.set_defaults(handler=_cmd_queue)
    models = sub.add_parser("models", help="list trained models")
    models.add_argument("--json", action="store_true", help="print them as JSON")
    _data_dir_arg(models)
    models.set_defaults(handler=_cmd_models)


def _cmd_serve(args) -> int:
    return serve_from_args(args)


def _cmd_demo(args) -> int:
    from .audio.demo import write_demo_sounds

    paths = write_demo_sounds(args.folder, count=args.count, seed=args.seed)
    print(f"Wrote {len(paths)} demo sounds to {args.folder}")
    return 0


def _cmd_train(args) -> int:
    from .cli_queue import follow_queued, requested_by
    from .datasets import DatasetError
    from .generation.after_training import analyse_trained_run
    from .training import TrainingRunner, get_adaptive_config, latest_resumable_run
    from .training.queue import RunQueue, executor_running
    from .training.runner import plan_new_run, plan_resume

    data_dir = resolve_data_dir(args.data_dir)
    manifest = _train_dataset(data_dir, args.source, args.name)
    on_server = executor_running(data_dir)  # a server trains here: join its queue, never train beside it
    # After Ctrl-C the controls wait for the model's first use (the library makes them then): the
    # analysis took 5 of the 8 s a stop took on a tiny demo run.
    runner = None if on_server else TrainingRunner(data_dir, after_training=analyse_trained_run, after_cancel=False)
    events: queue.Queue = queue.Queue()
    if args.resume:
        run = latest_resumable_run(data_dir, manifest.name)
        if run is None:
            raise DatasetError(f"Dataset {manifest.name!r} has no run with a checkpoint to resume; train without --resume first.")
        if on_server:
            plan_resume(data_dir, run.run_id, args.epochs)
            entry = RunQueue(data_dir).add(kind="resume", dataset=manifest.name, requested_by=requested_by(),
                                           epochs=args.epochs, run_id=run.run_id)
        else:
            runner.resume(run.run_id, events.put, epochs=args.epochs, device=args.device)
        print(f"Resuming run {run.run_id} from epoch {run.epochs_done} (of {args.epochs or run.total_epochs}).")
    else:
        config = get_adaptive_config(manifest.file_count, args.preset).with_overrides(
            epochs=args.epochs, learning_rate=args.learning_rate, batch_size=args.batch_size,
            dropout=args.dropout, weight_decay=args.weight_decay, kl_weight_max=args.kl_weight_max,
            attribute_weight=args.attribute_weight, seed=args.seed,
            patience=args.patience,
        )
        base = None
        if args.start_from:
            from .library.models import resolve_model

            base = resolve_model(data_dir, args.start_from)
        start_from = base.model_id if base else None
        if on_server:
            config = plan_new_run(data_dir, manifest.name, config, start_from).config
            entry = RunQueue(data_dir).add(kind="new", dataset=manifest.name, requested_by=requested_by(),
                                           config=config.to_dict(), start_from=start_from)
            run_id = "queued on the server"
        else:
            run_id = runner.start(manifest.name, config, events.put, device=args.device, start_from=start_from)
        stops = f"stops after {config.patience} epochs without a new best" if config.patience else "trains to the end"
        print(f"Training run {run_id}: {config.epochs} epochs, preset {config.preset}, "
              f"learning rate {config.learning_rate:g}, batch {config.batch_size}; {stops}.")
        if base is not None:
            print(f"Starting from model {base.name!r} (its weights, sound features and size).")
    if on_server:
        device = "" if args.device == "auto" else f" (--device {args.device} is the server's choice there)"
        print(f"A server is running on this data folder: the run joins its training queue{device}.")
        return follow_queued(data_dir, entry.entry_id, manifest.name)
    from .cli_progress import follow_run

    return follow_run(runner, events, data_dir, manifest.name)


def _train_dataset(data_dir: Path, source: str, name: str | None):
    """The dataset `sda train SOURCE` means: a folder imported now (saying what was kept), else an
    imported dataset by name."""
    from .datasets import DatasetError, import_folder, load_dataset

    if Path(source).is_dir():
        manifest = import_folder(data_dir, Path(source), name=name, progress=_import_progress)
        _clear_line()
        print(f"Dataset {manifest.name!r}: {manifest.file_count} usable files, {manifest.total_duration_s:.1f} s of audio.")
        if manifest.already_present:
            print(f"  {len(manifest.already_present)} files were already in the dataset.")
        for rejected in manifest.rejected:
            print(f"  skipped {rejected.name}: {rejected.reason}")
        return manifest
    try:
        return load_dataset(data_dir, name or source)
    except DatasetError:
        raise DatasetError(f"{source!r} is neither a folder nor an imported dataset.") from None


def _import_progress(done: int, total: int) -> None:
    if sys.stderr.isatty():
        print(f"\rChecking files {done}/{total}", end="", file=sys.stderr, flush=True)


def _clear_line() -> None:
    if sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr, flush=True)


def _cmd_generate(args) -> int:
    import random

    from .generation.export import AudioFormat, write_audio
    from .generation.settings import DEFAULT_DURATION_S
    from .library import ModelError, SoundRequest, generate_sounds, render, resolve_model, validate_request
    from .library.packs import sound_file_name

    data_dir = resolve_data_dir(args.data_dir)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    blend = None
    if args.blend:
        file_a, file_b, amount = args.blend
        amount = _parse_number(amount, "--blend AMOUNT")
        blend = (_blend_end(data_dir, args.model, file_a), _blend_end(data_dir, args.model, file_b), amount)
    duration = args.duration
    if duration is None:  # what suits the model's sounds (a kit of one-shots: about one hit)
        try:
            duration = resolve_model(data_dir, args.model).default_duration_s
        except ModelError:
            duration = DEFAULT_DURATION_S  # validate_request says what is wrong with the model
    request = SoundRequest(model=args.model, seed=seed, variations=args.variations, duration_s=duration,
                           controls=_parse_controls(args.control), variation_amount=args.variation_amount, blend=blend,
                           format=args.format, bits=args.bits, rate=args.rate)
    model, request = validate_request(data_dir, request)  # clear errors before any model is loaded
    why = "" if args.duration is not None else (
        " (the typical length of its sounds; --duration sets another)" if model.typical_seconds else "")
    print(f"Generating {request.variations} x {request.duration_s:g} s{why} with model {model.name!r} (seed {seed}).",
          file=sys.stderr)
    if args.out is None:
        for sound in generate_sounds(data_dir, request, device=args.device):
            print(sound.audio_path)
            _print_nearest(sound.variation, sound.nearest)
        return 0
    made = render(data_dir, request, device=args.device)
    fmt = AudioFormat.parse(request.format, request.bits, request.rate)
    for variation, wave in made.waves.items():
        path = args.out / sound_file_name(model.name, seed, variation, fmt)
        print(write_audio(path, wave, made.sample_rate, fmt))
        _print_nearest(variation, made.nearest.get(variation))
    return 0


def _print_nearest(variation: int, nearest) -> None:
    """New sound or copy, on stderr (stdout lists only the files, for scripts)."""
    if nearest is not None:
        print(f"  variation {variation}: {nearest.sentence()}, {nearest.distance_db:.1f} dB "
              f"(its closest sibling is {nearest.sibling_db:.1f} dB away)", file=sys.stderr)


def _cmd_transform(args) -> int:
    """Each file re-synthesised by the model; a file that cannot be used is skipped with the
    importer's reason and the others still go through (exit status 1 if any was skipped)."""
    import random
    from dataclasses import replace

    from .audio.io import AudioRejected
    from .generation.export import AudioFormat, write_audio
    from .library import SoundRequest, generate_sounds, keep_source, transform_file, validate_request

    data_dir = resolve_data_dir(args.data_dir)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    request = SoundRequest(model=args.model, seed=seed, controls=_parse_controls(args.control),
                           variation_amount=args.variation_amount, format=args.format, bits=args.bits, rate=args.rate)
    model, request = validate_request(data_dir, request)  # clear errors before any model is loaded
    fmt = AudioFormat.parse(request.format, request.bits, request.rate)
    count = len(args.files)
    print(f"Transforming {count} file{'' if count == 1 else 's'} with model {model.name!r} (seed {seed}, "
          f"variation {request.variation_amount:g}).", file=sys.stderr)
    skipped, written = 0, set()
    for path in args.files:
        try:
            if not path.is_file():
                raise AudioRejected("There is no such file." if not path.exists() else "It is not a file.")
            if args.out is None:
                source = keep_source(data_dir, path, path.name)
                for sound in generate_sounds(data_dir, replace(request, source=source.source_id), device=args.device):
                    print(sound.audio_path)
                continue
            made = transform_file(data_dir, request, path, device=args.device)
        except AudioRejected as exc:
            skipped += 1
            print(f"skipped {path}: {exc.reason}", file=sys.stderr)
            continue
        target = _output_path(args.out, path, fmt.extension, written)
        written.add(target)
        print(write_audio(target, made.waves[1], made.sample_rate, fmt))
    if skipped:
        print(f"{skipped} of {count} file{'' if count == 1 else 's'} skipped.", file=sys.stderr)
    return 1 if skipped else 0


def _output_path(folder: Path, source: Path, extension: str, taken: set) -> Path:
    """folder/<input's stem><extension>; never the input itself, never twice in one run."""
    stem = source.stem or "sound"
    target = folder / f"{stem}{extension}"
    n = 1
    while target in taken or (target.exists() and target.resolve() == source.resolve()):
        n += 1
        target = folder / f"{stem}-transformed{'' if n == 2 else f'-{n - 1}'}{extension}"
    return target


def _cmd_export_model(args) -> int:
    from .library import export_file_name, export_model, resolve_model

    data_dir = resolve_data_dir(args.data_dir)
    model = resolve_model(data_dir, args.model)
    out = args.out / export_file_name(model) if args.out.is_dir() else args.out
    print(export_model(data_dir, model.model_id, out))
    return 0


def _cmd_import_model(args) -> int:
    from .library import import_model

    model = import_model(resolve_data_dir(args.data_dir), args.zip)
    controls = ", ".join(model.controls) or "none"
    print(f"Imported model {model.name!r} (id {model.model_id}): trained on {model.dataset!r} for "
          f"{model.epochs_trained} epochs; sound controls: {controls}.")
    return 0


def _blend_end(data_dir: Path, model_ref: str, end: str) -> str:
    """A --blend end as the request names it: a dataset file's name as given, or a sound file
    (a path that is not one of the dataset's names) kept in the library, by its id."""
    from .audio.io import AudioRejected
    from .generation.analysis import load_analysis
    from .library import keep_source, resolve_model

    path = Path(end)
    if not path.is_file():
        return end
    analysis = load_analysis(resolve_model(data_dir, model_ref).run_dir)
    if analysis is not None and end in analysis.file_latents:
        return end
    try:
        return keep_source(data_dir, path, path.name).source_id
    except AudioRejected as exc:
        raise ValueError(f"{end}: {exc.reason}") from None


def _parse_controls(items: list[str]) -> dict[str, float]:
    controls = {}
    for item in items:
        label, sep, value = item.rpartition("=")
        if not sep or not label.strip():
            raise ValueError(f"--control needs LABEL=VALUE (e.g. brightness=+1.5), got {item!r}.")
        controls[" ".join(label.replace("_", " ").split()).lower()] = _parse_number(value, f"--control {label}")
    return controls


def _parse_number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{what} must be a number, got {text!r}.") from None


def _cmd_queue(args) -> int:
    from .cli_queue import print_queue

    return print_queue(resolve_data_dir(args.data_dir), args.json)


def _cmd_models(args) -> int:
    import json

    from .library import list_models

    models = list_models(resolve_data_dir(args.data_dir))
    if args.json:
        print(json.dumps([m.to_dict() for m in models], indent=1))
        return 0
    if not models:
        print("No trained models yet; train one with `sda train FOLDER`.")
        return 0
    rows = [("NAME", "ID", "DATASET", "EPOCHS", "BEST VAL", "STATUS", "CONTROLS")]
    for m in models:
        loss = f"{m.best_val_loss:.4f}" if m.best_val_loss is not None else "-"
        rows.append((m.name, m.model_id, m.dataset, f"{m.epochs_trained}/{m.total_epochs}", loss, m.status,
                     ", ".join(m.controls) or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
