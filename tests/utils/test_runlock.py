"""One writer per run folder: a second process is refused with exit 2, a dead owner's lock is taken over."""
from __future__ import annotations

import json
import socket
import subprocess
import sys

from conftest import run_cli

PRETRAIN = ("pretrain", "--data", "digits", "--backbone", "small-convnet", "--views", "small-gray", "--batch-size", "32",
            "--steps", "2", "--quiet")


def _lock(out, pid: int, host: str | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / ".lock").write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "command": "pretrain",
                                           "started": "2026-12-04 10:00:00"}))


def test_a_folder_another_live_process_writes_is_refused_with_exit_2(tmp_path):
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        out = tmp_path / "run"
        _lock(out, owner.pid)
        for args in (PRETRAIN + ("--out", str(out)), ("pretrain", "--resume", "--out", str(out)),
                     ("study", "--methods", "", "--checkpoint", "x=nowhere", "--labeled", "digits", "--out", str(out)),
                     ("train", "--labeled", "digits", "--init", "random", "--backbone", "small-convnet", "--out", str(out))):
            result = run_cli(*args)
            assert result.returncode == 2, (args, result.stderr)
            assert f"{out} is in use by process {owner.pid} (pretrain, since 2026-12-04 10:00:00)" in result.stderr
        assert json.loads((out / ".lock").read_text())["pid"] == owner.pid  # the owner's lock is left alone
        _lock(out, 1, host="another-host")  # a lock from another machine cannot be checked: refused, named
        assert "on host another-host" in run_cli(*PRETRAIN, "--out", str(out)).stderr
    finally:
        owner.kill()
        owner.wait()


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_warning_and_released(tmp_path, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "run"
    _lock(out, dead.pid)
    result = run_cli(*PRETRAIN, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert f"taking over the lock of {out} left by process {dead.pid}" in caplog.text
    assert (out / "encoder.safetensors").exists() and not (out / ".lock").exists()
