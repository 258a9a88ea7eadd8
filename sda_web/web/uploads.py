"""Getting sounds in: streamed uploads and background import jobs.

Uploads are streamed part by part into a temp folder inside the data
directory (never held in memory, never in /tmp, so a big set cannot fill a
small tmpfs), then imported in a worker thread while the page polls the job's
progress. The temp folder is removed whatever happens.
"""
from __future__ import annotations

import asyncio
import itertools
import re
import shutil
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from starlette.requests import Request

from ..datasets import DatasetError, RejectedFile

UPLOADS_DIR = ".uploads"
MAX_FILES = 1000
MAX_FIELD_BYTES = 64 * 1024
MAX_NAME_CHARS = 200  # of a file name as shown back to the user
KEEP_JOBS = 20
MB = 1024 * 1024
DEFAULT_MAX_FILE_MB = 200
DEFAULT_MAX_REQUEST_MB = 2048
MALFORMED = ("The upload could not be read from here on (a file name or header was too long, or the data was "
             "malformed); the files before it were kept. Upload the rest again, with shorter names.")
CUT_OFF = "The upload stopped before this file was complete (the connection was lost); upload it again."


class UploadError(ValueError):
    """The upload itself was unusable; the message says what to do."""

    status_code = 422

    def __init__(self, message: str, rejected: tuple = ()):
        super().__init__(message)
        self.rejected = tuple(rejected)


class UploadTooLarge(UploadError):
    status_code = 413


def fmt_size(n_bytes: int) -> str:
    """200 MB, 2 GB, 1.5 MB: how a limit is stated to the user."""
    mb = n_bytes / MB
    if mb >= 1024 and mb % 1024 == 0:
        return f"{int(mb // 1024)} GB"
    return f"{mb:g} MB" if mb >= 1 else f"{n_bytes // 1024} KB"


@dataclass(frozen=True)
class UploadLimits:
    """Per file and per request (`sda serve --max-upload-mb / --max-request-mb`)."""

    file_bytes: int = DEFAULT_MAX_FILE_MB * MB
    request_bytes: int = DEFAULT_MAX_REQUEST_MB * MB

    @classmethod
    def from_mb(cls, file_mb: float | None = None, request_mb: float | None = None) -> "UploadLimits":
        file_mb = DEFAULT_MAX_FILE_MB if file_mb is None else file_mb
        request_mb = DEFAULT_MAX_REQUEST_MB if request_mb is None else request_mb
        for label, value in (("--max-upload-mb", file_mb), ("--max-request-mb", request_mb)):
            if not (value == value and 0 < value <= 1024 * 1024):
                raise ValueError(f"{label} must be a number of megabytes between 0 and 1048576, not {value}.")
        return cls(int(file_mb * MB), int(request_mb * MB))

    @property
    def describe(self) -> str:
        return f"up to {fmt_size(self.file_bytes)} per file and {fmt_size(self.request_bytes)} per upload"


@dataclass
class ReceivedUpload:
    fields: dict[str, str]
    files: list[tuple[str, Path]]  # (name as the user knows it, temp path), complete and non-empty
    rejected: list  # RejectedFile(name, reason) for files refused while receiving
    cut_off: bool = False  # the connection ended early; the complete files are still here
    file_fields: list[str] = field(default_factory=list)  # the form field each of `files` came in (same order)


def upload_area(data_dir: Path) -> Path:
    path = Path(data_dir) / UPLOADS_DIR
    path.mkdir(parents=True, exist_ok=True)
    return path


def _safe_suffix(filename: str) -> str:
    suffix = Path(filename).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ""


def display_name(raw: bytes) -> str:
    """The base name the browser sent, fit to show back (never used as a path)."""
    text = unicodedata.normalize("NFC", raw.decode("utf-8", "replace")).replace("\\", "/")
    text = "".join(ch for ch in text.rsplit("/", 1)[-1] if unicodedata.category(ch)[0] != "C").strip()
    if text in ("", ".", ".."):
        return ""
    return text if len(text) <= MAX_NAME_CHARS else text[: MAX_NAME_CHARS - 1] + "…"


async def receive_upload(request: Request, dest: Path, limits: UploadLimits | None = None) -> ReceivedUpload:
    """Stream a multipart form into `dest`, file by file, within `limits`.

    A file over the per-file limit, an empty file, or the file the connection
    was lost in is dropped (its bytes deleted) and listed in `.rejected`; the
    other files are kept. Over the per-request limit, UploadTooLarge."""
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header
    from starlette.requests import ClientDisconnect

    limits = limits or UploadLimits()
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise UploadError("Choose one or more sound files to upload.")
    too_large = UploadTooLarge(f"The upload is larger than the {fmt_size(limits.request_bytes)} limit per upload; "
                               "send fewer files at a time.")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limits.request_bytes:
        raise too_large

    receiver = _PartReceiver(dest, limits, parse_options_header)
    parser = MultipartParser(params[b"boundary"], receiver.callbacks())
    received, malformed = 0, False
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limits.request_bytes:
                raise too_large
            parser.write(chunk)
        parser.finalize()
    except ClientDisconnect:
        pass
    except FormParserError:
        malformed = True
    except BaseException:
        receiver.close_open_file()
        raise
    if not receiver.ended:
        receiver.cut_off(malformed)
    return receiver.upload


class _PartReceiver:
    """The multipart parser's callbacks: each file part streams into its own file in `dest`, each
    other field into a bounded buffer."""

    def __init__(self, dest: Path, limits: UploadLimits, parse_options_header):
        self.dest, self.limits = dest, limits
        self.parse_options_header = parse_options_header  # python_multipart's, imported by the caller
        self.upload = ReceivedUpload({}, [], [])
        self.part: dict = {}
        self.header_name = self.header_value = b""
        self.ended = False
        self.count = 0

    def callbacks(self) -> dict:
        return {"on_part_begin": self.on_part_begin, "on_part_data": self.on_part_data,
                "on_part_end": self.on_part_end, "on_header_field": self.on_header_field,
                "on_header_value": self.on_header_value, "on_header_end": self.on_header_end,
                "on_headers_finished": self.on_headers_finished, "on_end": self.on_end}

    def drop(self, reason: str) -> None:
        """Forget the file being received: close, delete, and say why."""
        part = self.part
        part["file"].close()
        part["path"].unlink(missing_ok=True)
        self.upload.rejected.append(RejectedFile(part["original"], reason))
        part.update(file=None, skip=True)

    def close_open_file(self) -> None:
        if self.part.get("file") is not None:
            self.part["file"].close()

    def cut_off(self, malformed: bool) -> None:
        """The form never ended: keep the files that arrived whole."""
        self.upload.cut_off = True
        if self.part.get("file") is not None:
            self.drop(MALFORMED if malformed else CUT_OFF)
        elif malformed and (self.upload.files or self.upload.rejected):
            self.upload.rejected.append(RejectedFile("(the rest of the upload)", MALFORMED))

    # -- the parser's callbacks --------------------------------------------

    def on_part_begin(self):
        self.part.clear()
        self.part.update(headers={}, file=None, field=None, buf=bytearray(), size=0, skip=False)

    def on_header_field(self, data, start, end):
        self.header_name += data[start:end]

    def on_header_value(self, data, start, end):
        self.header_value += data[start:end]

    def on_header_end(self):
        self.part["headers"][self.header_name.lower()] = self.header_value
        self.header_name = self.header_value = b""

    def on_headers_finished(self):
        part = self.part
        _, options = self.parse_options_header(part["headers"].get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" not in options:
            part["field"] = name
            return
        raw = options[b"filename"]
        original = display_name(raw)
        if not raw:  # an empty file input still sends a part
            part["skip"] = True
            return
        if self.count >= MAX_FILES:
            raise UploadError(f"That is more than {MAX_FILES} files; import them in smaller batches.")
        path = self.dest / f"{self.count:05d}{_safe_suffix(original)}"
        self.count += 1
        part.update(file=open(path, "wb"), path=path, original=original or "unnamed file", input=name)

    def on_part_data(self, data, start, end):
        part = self.part
        if part["file"] is not None:
            part["size"] += end - start
            if part["size"] > self.limits.file_bytes:
                self.drop(f"It is larger than the {fmt_size(self.limits.file_bytes)} limit per file; "
                          "trim it or export it at a lower sample rate.")
                return
            part["file"].write(data[start:end])
        elif part["field"] is not None:
            part["buf"] += data[start:end]
            if len(part["buf"]) > MAX_FIELD_BYTES:
                raise UploadError("A form field was too long.")

    def on_part_end(self):
        part, upload = self.part, self.upload
        if part.get("file") is not None:
            part["file"].close()
            part["file"] = None
            if part["size"] == 0:
                part["path"].unlink(missing_ok=True)
                upload.rejected.append(RejectedFile(part["original"], "It is empty (0 bytes)."))
            else:
                upload.files.append((part["original"], part["path"]))
                upload.file_fields.append(part["input"])
        elif part.get("field") is not None:
            upload.fields[part["field"]] = part["buf"].decode("utf-8", "replace")

    def on_end(self):
        self.ended = True


@dataclass
class ImportJob:
    id: str
    name: str
    stage: str = "Waiting…"
    done: int = 0
    total: int = 0
    finished: bool = False
    error: str | None = None
    accepted: int = 0
    rejected: int = 0
    already_present: int = 0
    rejected_files: tuple = ()  # RejectedFile(name, reason), to list every reason
    manifest: object | None = None

    @property
    def running(self) -> bool:
        return not self.finished

    def progress(self, done: int, total: int) -> None:
        """Called from the import thread after each file (plain int stores: no lock needed)."""
        self.done, self.total = done, total
        self.stage = "Checking files…"


@dataclass
class ImportJobs:
    """The app's import jobs, newest last; finished ones are kept for a while so pages can report them."""

    jobs: dict[str, ImportJob] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _tasks: set = field(default_factory=set)

    def get(self, job_id: str) -> ImportJob | None:
        return self.jobs.get(job_id)

    def active(self) -> list[ImportJob]:
        return [job for job in self.jobs.values() if job.running]

    def start(self, name: str, work: Callable[[ImportJob], object], cleanup: Path | None = None,
              on_done: Callable[[ImportJob], None] | None = None) -> ImportJob:
        """Run `work(job)` (blocking: it gets a worker thread) and record how it ended."""
        job = ImportJob(id=f"{next(self._ids)}", name=name)
        self.jobs[job.id] = job
        while len(self.jobs) > KEEP_JOBS:
            oldest = next(iter(self.jobs))
            if self.jobs[oldest].running:
                break
            del self.jobs[oldest]
        task = asyncio.get_running_loop().create_task(self._run(job, work, cleanup, on_done))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job, work, cleanup, on_done) -> None:
        try:
            manifest = await asyncio.to_thread(work, job)
            job.manifest = manifest
            job.name = manifest.name  # as stored (the name is sanitised)
            job.accepted = manifest.file_count
            job.rejected_files = tuple(manifest.rejected)
            job.rejected = len(job.rejected_files)
            job.already_present = len(getattr(manifest, "already_present", ()))
            if on_done is not None:
                on_done(job)
        except (DatasetError, UploadError, ValueError, OSError) as exc:
            job.error = str(exc) or "The import failed; please try again."
            job.rejected_files = tuple(getattr(exc, "rejected", ()))
        except Exception as exc:  # never a traceback on the page
            job.error = f"The import failed unexpectedly ({type(exc).__name__}); please try again."
        finally:
            job.finished = True
            if cleanup is not None:
                await asyncio.to_thread(shutil.rmtree, cleanup, True)

    async def wait_all(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def new_upload_dir(data_dir: Path) -> Path:
    return Path(tempfile.mkdtemp(prefix="upload-", dir=upload_area(data_dir)))
