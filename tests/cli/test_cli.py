"""`sda` as a user runs it: real subprocesses, real files."""
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import soundfile as sf

from cli_helpers import sda_argv, sda_env
from sda_web.training import list_runs, load_history

pytestmark = pytest.mark.trains  # every test here trains a real model


def test_demo_data_then_train_lists_skipped_files(tmp_path):
    demo = tmp_path / "demo"
    out = subprocess.run(sda_argv("demo-data", str(demo), "--count", "6"), capture_output=True, text=True, env=sda_env())
    assert out.returncode == 0 and "Wrote 6 demo sounds" in out.stdout
    (demo / "notes.wav").write_bytes(b"definitely not audio")
    sf.write(demo / "silence.wav", np.zeros(24000, dtype=np.float32), 24000)
    data = tmp_path / "data"
    out = subprocess.run(sda_argv("train", str(demo), "--epochs", "2", "--data-dir", str(data)),
                         capture_output=True, text=True, env=sda_env(), timeout=240)
    assert out.returncode == 0, out.stderr + out.stdout
    assert "6 usable files" in out.stdout
    assert "skipped notes.wav: Not an audio file" in out.stdout
    assert "skipped silence.wav: It is silent" in out.stdout
    assert "Finished 2/2 epochs" in out.stdout
    assert [m.epoch for m in load_history(list_runs(data)[0].run_dir)] == [1, 2]


def test_ctrl_c_saves_a_checkpoint_and_resume_continues(tmp_path):
    demo = tmp_path / "demo"
    subprocess.run(sda_argv("demo-data", str(demo), "--count", "8"), check=True, capture_output=True, env=sda_env())
    data = tmp_path / "data"
    proc = subprocess.Popen(sda_argv("train", str(demo), "--epochs", "500", "--data-dir", str(data)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=sda_env(),
                            start_new_session=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("Epoch 3/500"):
            break
    sent = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C does: the training process gets it too
    rest, _ = proc.communicate(timeout=60)
    stopped_within = time.monotonic() - sent
    output = "".join(lines) + rest
    assert proc.returncode == 130, output
    assert stopped_within < 5, f"took {stopped_within:.1f} s to stop"
    assert "Checkpoint saved; resume with:" in output and "--resume" in output
    run = list_runs(data)[0]
    assert run.status == "cancelled" and run.has_checkpoint
    stopped_at = run.epochs_done

    out = subprocess.run(sda_argv("train", "demo", "--resume", "--epochs", str(stopped_at + 2), "--data-dir", str(data)),
                         capture_output=True, text=True, env=sda_env(), timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"from epoch {stopped_at}" in out.stdout
    history = load_history(run.run_dir)
    assert [m.epoch for m in history] == list(range(1, stopped_at + 3))


@pytest.mark.parametrize("args, message", [
    (["train", "nowhere-at-all"], "is neither a folder nor an imported dataset"),
    (["train", "{demo}", "--preset", "wild"], "Unknown preset"),
    (["train", "{demo}", "--epochs", "0"], "Max epochs must be between 1"),
    (["train", "{demo}", "--lr", "-1"], "Learning rate must be at least"),
    (["train", "{demo}", "--attribute-weight", "-0.5"], "Attribute weight must be at least 0.0 and at most 100.0, got -0.5."),
    (["train", "{demo}", "--device", "cuda"], "CUDA was requested but no CUDA GPU is available"),
])
def test_bad_input_is_one_clear_sentence(tmp_path, args, message):
    if "cuda" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    demo = tmp_path / "demo"
    subprocess.run(sda_argv("demo-data", str(demo), "--count", "3"), check=True, capture_output=True, env=sda_env())
    args = [a.replace("{demo}", str(demo)) for a in args]
    out = subprocess.run(sda_argv(*args, "--data-dir", str(tmp_path / "data")), capture_output=True, text=True, env=sda_env(),
                         timeout=120)
    assert out.returncode != 0
    assert message in out.stderr + out.stdout
    assert "Traceback" not in out.stderr
