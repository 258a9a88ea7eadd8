"""Uploads: streamed to disk within limits, every bad file answered by name, nothing stray left behind."""
from __future__ import annotations

import hashlib
import io
import os
import socket
import time

import numpy as np
import pytest
import soundfile as sf
from starlette.testclient import TestClient

from conftest_web import HX, ScriptedRunner, first_answer, free_port, launch, wait_import
from sda_web.web.app import create_app
from sda_web.web.uploads import UploadLimits, fmt_size

pytestmark = pytest.mark.timeout(90)
RATE = 24000


def tone(seconds: float = 0.5, rate: int = RATE, channels: int = 1, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    wave = (0.4 * np.exp(-2 * t) * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.tile(wave[:, None], (1, channels)) if channels > 1 else wave


def encode(wave: np.ndarray, rate: int = RATE, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def good(freq: float = 220.0) -> bytes:
    return encode(tone(freq=freq))


def nan_wav() -> bytes:
    wave = tone()
    wave[100:110] = np.nan
    return encode(wave, subtype="FLOAT")


def leftovers(data) -> list[str]:
    """Temp files anywhere in the data dir: upload folders, partial copies."""
    found = [p.name for p in (data / ".uploads").iterdir()] if (data / ".uploads").exists() else []
    found += [str(p) for p in data.rglob("*.part")] + [str(p) for p in data.rglob("*.tmp")]
    return found


@pytest.fixture
def client(data):
    app = create_app(data, runner=ScriptedRunner(), upload_limits=UploadLimits.from_mb(1, 4))
    with TestClient(app) as c:
        yield c


def test_each_bad_file_gets_its_own_sentence_and_the_good_ones_are_kept(client, data):
    flac = encode(tone(freq=330), fmt="FLAC")
    cases = {
        "notes.wav": (b"these are my notes, not a sound", "Not an audio file"),
        "truncated.flac": (flac[: len(flac) // 2], "could not be read to the end"),
        "empty.wav": (b"", "It is empty (0 bytes)"),
        "click.wav": (encode(tone()[:1]), "too short"),
        "broken.wav": (nan_wav(), "invalid samples (NaN"),
        "picture.wav": (b"\x89PNG\r\n\x1a\n" + os.urandom(2000), "Not an audio file"),  # a lying extension
        "huge.wav": (encode(tone(seconds=30)), f"larger than the {fmt_size(1024 * 1024)} limit per file"),
    }
    accepted = {
        "kick.wav": good(110),
        "ambisonic-32ch.wav": encode(tone(channels=32, seconds=0.3), subtype="PCM_16"),
        "hires-384k.wav": encode(tone(rate=384_000), rate=384_000),
        "really-flac.wav": flac,  # another lying extension: the content decides
        "a-wav.mp3": good(440),
    }
    files = [("files", (name, body, "audio/wav")) for name, (body, _) in cases.items()]
    files += [("files", (name, body, "audio/wav")) for name, body in accepted.items()]
    r = client.post("/data/upload", data={"name": "mixed"}, files=files, headers=HX)
    assert r.status_code == 200, r.text
    page = wait_import(client, "1").text
    assert f"“mixed” now has {len(accepted)} files" in page and f"{len(cases)} rejected" in page
    listing = client.get("/data").text + page
    for name, (_, reason) in cases.items():
        assert f"<strong>{name}</strong>: " in listing and reason in listing, name
    stored = sorted(p.name for p in (data / "datasets" / "mixed" / "audio").iterdir())
    assert len(stored) == len(accepted), stored
    assert leftovers(data) == []


def test_a_truncated_wav_is_rejected(client, data):
    body = encode(tone(seconds=1.0), subtype="PCM_16")
    files = [("files", ("cut.wav", body[: len(body) // 2], "audio/wav")), ("files", ("ok.wav", good(), "audio/wav"))]
    client.post("/data/upload", data={"name": "cut"}, files=files, headers=HX)
    assert "1 rejected" in wait_import(client, "1").text


def test_names_are_sanitised_and_duplicates_never_overwrite(client, data, tmp_path):
    files = [("files", ("../../escape.wav", good(200), "audio/wav")),
             ("files", ("C:\\Users\\me\\same name.wav", good(300), "audio/wav")),
             ("files", ("same name.wav", good(400), "audio/wav")),
             ("files", ("\x00\x1bweird\u202e.wav", good(500), "audio/wav")),
             ("files", ("x" * 1000 + ".wav", good(600), "audio/wav"))]
    client.post("/data/upload", data={"name": "names"}, files=files, headers=HX)
    assert "“names” now has 5 files" in wait_import(client, "1").text
    audio = data / "datasets" / "names" / "audio"
    stored = sorted(p.name for p in audio.iterdir())
    assert "escape.wav" in stored and "same-name.wav" in stored and "same-name-2.wav" in stored, stored
    assert all(len(n) <= 100 and n.isascii() and "/" not in n for n in stored), stored
    assert not (tmp_path / "escape.wav").exists() and not (data / "escape.wav").exists()
    first = hashlib.sha256((audio / "same-name.wav").read_bytes()).hexdigest()
    # the same name again, different sound: kept beside, the first one untouched
    client.post("/data/upload", data={"name": "names"}, files=[("files", ("same name.wav", good(700), "audio/wav"))],
                headers=HX)
    wait_import(client, "2")
    assert hashlib.sha256((audio / "same-name.wav").read_bytes()).hexdigest() == first
    assert "same-name-3.wav" in {p.name for p in audio.iterdir()}
    # a name too long for the form parser: what came before it is kept, the rest is reported
    files = [("files", ("before.wav", good(800), "audio/wav")), ("files", ("y" * 20000 + ".wav", good(900), "audio/wav"))]
    client.post("/data/upload", data={"name": "names"}, files=files, headers=HX)
    page = wait_import(client, "3").text
    assert "1 rejected" in page and "file name or header was too long" in page
    assert "before.wav" in {p.name for p in audio.iterdir()}
    assert leftovers(data) == []


def test_request_limit_is_stated_and_checked_before_and_while_reading(client, data):
    limit = fmt_size(4 * 1024 * 1024)
    # declared too large: refused before a byte is read
    r = client.post("/data/upload", content=b"x" * 10,
                    headers={**HX, "content-type": "multipart/form-data; boundary=XX",
                             "content-length": str(5 * 1024 * 1024)})
    assert r.status_code == 413 and f"larger than the {limit} limit per upload" in r.text
    # no length given (chunked): counted as it streams
    boundary = b"XX"

    def body():
        yield b"--XX\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.wav\"\r\n\r\n"
        for _ in range(50):
            yield b"\0" * (100 * 1024)

    r = client.post("/data/upload", content=body(),
                    headers={**HX, "content-type": "multipart/form-data; boundary=" + boundary.decode()})
    assert r.status_code == 413 and limit in r.text
    r = client.post("/data/upload", content=b"x" * 10,
                    headers={"content-type": "multipart/form-data; boundary=XX", "content-length": str(5 * 1024 * 1024)})
    assert r.status_code == 413 and "limit per upload" in r.text and "<nav" in r.text  # the no-JS page
    assert leftovers(data) == []


def test_only_unusable_files_list_every_reason_with_422(client, data):
    files = [("files", ("empty.wav", b"", "audio/wav")), ("files", ("big.wav", encode(tone(seconds=30)), "audio/wav"))]
    r = client.post("/data/upload", data={"name": "nope"}, files=files, headers=HX)
    assert r.status_code == 422
    assert "<strong>empty.wav</strong>: It is empty" in r.text and "<strong>big.wav</strong>: It is larger" in r.text
    assert not (data / "datasets" / "nope").exists() and leftovers(data) == []


@pytest.mark.parametrize("name,message", [("x" * 65, "too long"), ("!!!", "no usable characters")])
def test_bad_dataset_names_are_refused_before_importing(client, data, name, message):
    r = client.post("/data/upload", data={"name": name}, files=[("files", ("a.wav", good(), "audio/wav"))], headers=HX)
    assert r.status_code == 422 and message in r.text
    assert leftovers(data) == []


def test_an_aborted_upload_keeps_the_whole_files_and_leaves_nothing_stray(tmp_path):
    """A real server, a real socket that hangs up in the middle of the second file."""
    data = tmp_path / "data"
    port = free_port()
    proc = launch(data, port)
    try:
        first_answer(port)
        second = good(330)
        part = (b"--BB\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\ncut\r\n"
                b"--BB\r\nContent-Disposition: form-data; name=\"files\"; filename=\"whole.wav\"\r\n"
                b"Content-Type: audio/wav\r\n\r\n" + good(220) + b"\r\n"
                b"--BB\r\nContent-Disposition: form-data; name=\"files\"; filename=\"half.wav\"\r\n"
                b"Content-Type: audio/wav\r\n\r\n" + second[: len(second) // 2])
        head = (f"POST /data/upload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Content-Type: multipart/form-data; boundary=BB\r\nContent-Length: {len(part) + len(second)}\r\n\r\n")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(head.encode() + part)
            time.sleep(0.3)  # the server has read and written what came
        audio = data / "datasets" / "cut" / "audio"
        deadline = time.monotonic() + 30
        while not (audio.is_dir() and any(audio.iterdir()) and leftovers(data) == []):
            assert time.monotonic() < deadline, ("the complete file was not imported", leftovers(data))
            time.sleep(0.1)
        assert [p.name for p in audio.iterdir()] == ["whole.wav"]
        import httpx

        page = httpx.get(f"http://127.0.0.1:{port}/data?job=1", timeout=10).text
        assert "<strong>half.wav</strong>: The upload stopped before this file was complete" in page
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert "Traceback" not in out, out
