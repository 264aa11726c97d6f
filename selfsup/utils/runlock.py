"""One writer per run folder: ``OUT/.lock`` holds the owner's pid and host while a command writes there.

The lock file is created with O_CREAT | O_EXCL, which is atomic on local and NFS v3+ file systems, so
of two processes starting on the same folder exactly one gets it; the other exits 2 naming the owner.
A lock left by a process that died (same host, pid gone) is taken over with a warning; one held from
another host cannot be checked from here and is refused, with the file to delete named.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from .errors import ConfigError

log = logging.getLogger("selfsup")
LOCK = ".lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _owner(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def holder(out: Path) -> dict | None:
    """The live owner of ``out``'s lock (its record), or None when it is free or stale."""
    owner = _owner(out / LOCK)
    if not owner:
        return None
    if owner.get("host") == socket.gethostname() and not _alive(int(owner.get("pid", -1))):
        return None
    return owner


def _refusal(out: Path, owner: dict) -> ConfigError:
    where = "" if owner.get("host") == socket.gethostname() else f" on host {owner.get('host')}"
    return ConfigError(f"{out} is in use by process {owner.get('pid')}{where} ({owner.get('command', 'selfsup')}, "
                       f"since {owner.get('started', '?')}): wait for it, or delete {out / LOCK} if it is gone")


@contextlib.contextmanager
def run_lock(out: Path, command: str) -> Iterator[None]:
    """Hold ``out``'s lock while the body runs (the folder is made if missing); refuse with ConfigError (exit 2)
    when another live process holds it. A folder the lock made is removed again if the command left it empty,
    so a command refused before writing anything leaves no trace."""
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK
    record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                         "started": time.strftime("%Y-%m-%d %H:%M:%S")})
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = holder(out)
            if owner is not None:
                raise _refusal(out, owner) from None
            stale = _owner(path)
            log.warning("taking over the lock of %s left by process %s, which is no longer running",
                        out, stale.get("pid", "?"))
            with contextlib.suppress(FileNotFoundError):  # only one of two racing takers renames it away
                os.rename(path, path.with_name(f"{LOCK}.stale{os.getpid()}"))
                os.unlink(path.with_name(f"{LOCK}.stale{os.getpid()}"))
            continue
        with os.fdopen(fd, "w") as f:
            f.write(record)
        break
    else:
        raise _refusal(out, _owner(path))
    try:
        yield
    finally:
        if _owner(path).get("pid") == os.getpid():
            with contextlib.suppress(OSError):
                path.unlink()
        if made:
            with contextlib.suppress(OSError):  # not empty: the command wrote there
                out.rmdir()


__all__ = ["LOCK", "holder", "run_lock"]
