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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from starlette.requests import Request

UPLOADS_DIR = ".uploads"
MAX_FILES = 1000
MAX_FIELD_BYTES = 64 * 1024
KEEP_JOBS = 20


class UploadError(ValueError):
    """The upload itself was unusable; the message says what to do."""


def upload_area(data_dir: Path) -> Path:
    path = Path(data_dir) / UPLOADS_DIR
    path.mkdir(parents=True, exist_ok=True)
    return path


def _safe_suffix(filename: str) -> str:
    suffix = Path(filename).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ""


async def receive_upload(request: Request, dest: Path) -> tuple[dict[str, str], list[tuple[str, Path]]]:
    """Stream a multipart form into `dest`: (text fields, [(original name, temp path)])."""
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header

    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise UploadError("Choose one or more sound files to upload.")

    fields: dict[str, str] = {}
    files: list[tuple[str, Path]] = []
    state = {"headers": {}, "name": b"", "value": b"", "file": None, "field": None, "buf": bytearray()}

    def on_part_begin():
        state.update(headers={}, file=None, field=None, buf=bytearray())

    def on_header_field(data, start, end):
        state["name"] += data[start:end]

    def on_header_value(data, start, end):
        state["value"] += data[start:end]

    def on_header_end():
        state["headers"][state["name"].lower()] = state["value"]
        state["name"], state["value"] = b"", b""

    def on_headers_finished():
        _, options = parse_options_header(state["headers"].get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options:
            original = Path(options[b"filename"].decode("utf-8", "replace").replace("\\", "/")).name
            if not original:  # an empty file input still sends a part
                return
            if len(files) >= MAX_FILES:
                raise UploadError(f"That is more than {MAX_FILES} files; import them in smaller batches.")
            path = dest / f"{len(files):05d}{_safe_suffix(original)}"
            state["file"] = open(path, "wb")
            files.append((original, path))
        else:
            state["field"] = name

    def on_part_data(data, start, end):
        if state["file"] is not None:
            state["file"].write(data[start:end])
        elif state["field"] is not None:
            state["buf"] += data[start:end]
            if len(state["buf"]) > MAX_FIELD_BYTES:
                raise UploadError("A form field was too long.")

    def on_part_end():
        if state["file"] is not None:
            state["file"].close()
            state["file"] = None
        elif state["field"] is not None:
            fields[state["field"]] = state["buf"].decode("utf-8", "replace")

    parser = MultipartParser(params[b"boundary"], {
        "on_part_begin": on_part_begin, "on_part_data": on_part_data, "on_part_end": on_part_end,
        "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
    })
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except FormParserError:
        raise UploadError("The upload was cut off or malformed; please try again.") from None
    finally:
        if state["file"] is not None:
            state["file"].close()
    return fields, files


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
        from ..datasets import DatasetError

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
