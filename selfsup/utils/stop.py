"""A graceful stop on SIGTERM and SIGINT: the step in flight finishes, a checkpoint is written, the run exits.

A cluster scheduler sends SIGTERM before it preempts a job (Slurm, Kubernetes: then SIGKILL after a
grace period); Ctrl-C sends SIGINT. While a training loop runs (``deferred``), the first signal only
records the request: the loop reads it after the step in flight, writes a checkpoint and raises
``Stopped``. Outside a loop nothing is in flight, so ``Stopped`` is raised at once. A second signal
stops at once in either case (SIGINT as ``KeyboardInterrupt``, SIGTERM by the default action), except
that under torchrun a repeat within ``ECHO_SECONDS`` counts as the same request: a scheduler that signals
every process of a job reaches a worker directly and again through torchrun, within milliseconds.
Exit codes follow the shell's 128 + signal number: 130 for SIGINT, 143 for SIGTERM.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from typing import Iterator

from .errors import SelfSupError

log = logging.getLogger("selfsup")
SIGNALS = (signal.SIGTERM, signal.SIGINT)
ECHO_SECONDS = 2.0


class Stopped(SelfSupError):
    """The run stopped on a signal, after saving what a resume needs: exit 128 + the signal's number."""

    def __init__(self, signum: int, step: int | None = None, saved: bool = False) -> None:
        self.signal_name = signal.Signals(signum).name
        self.exit_code = 128 + signum
        self.step, self.saved = step, saved
        where = f" at step {step}" if step is not None else ""
        super().__init__(f"stopped{where} by {self.signal_name}")


class _State:
    requested: int | None = None  # the first signal's number
    at: float = 0.0  # when it came (time.monotonic)
    deferring: int = 0  # loops running now: a request waits for their step to end


_state = _State()


def requested() -> int | None:
    """The signal asking this process to stop, if any."""
    return _state.requested


def _handle(signum: int, frame: object) -> None:
    if _state.requested is not None:  # the second signal: at once
        if "TORCHELASTIC_RUN_ID" in os.environ and time.monotonic() - _state.at < ECHO_SECONDS:
            return
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    _state.requested, _state.at = signum, time.monotonic()
    if _state.deferring == 0:
        raise Stopped(signum)
    log.warning("%s received: stopping after this step (send it again to stop at once)",
                signal.Signals(signum).name)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Handle SIGTERM and SIGINT as above for the duration of a command (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    _state.requested, _state.deferring = None, 0
    for s in SIGNALS:
        signal.signal(s, _handle)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _state.requested = None


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Inside: a first signal waits for the loop to read ``requested()`` at its step's end."""
    _state.deferring += 1
    try:
        yield
    finally:
        _state.deferring -= 1


__all__ = ["SIGNALS", "Stopped", "deferred", "requested", "stop_on_signals"]
