"""What keeps a long run alive or stops it cleanly: stop signals, the non-finite step guard, checkpoint cadence and
write failures, the run lock."""
from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Callable

from gan_colorizer.errors import UserError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, the run simply is not locked
    fcntl = None

log = logging.getLogger("gan_colorizer")

class StopWaiting(Exception):
    """A stop signal arrived while the loop waited for data: no step is under way, so it ends the wait at once."""


class StopSignals:
    """SIGINT / SIGTERM ask the loop to stop after the current step; a second one stops at once (KeyboardInterrupt).

    The handler only sets a flag (writing from it could collide with a progress bar mid-write), except inside
    `waiting_for_data()`, which it ends with StopWaiting: workers killed by the same SIGTERM would never deliver.
    Such worker deaths must not raise mid-step either, so once a stop signal came PyTorch's SIGCHLD check is off
    until exit (shut the workers down before leaving). Installed from the main thread only; the previous handlers
    come back on exit.
    """

    def __init__(self):
        self.received: int | None = None
        self._previous: dict = {}
        self._waiting = False

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            if callable(handler) or sig != getattr(signal, "SIGCHLD", None):  # a caught SIGCHLD needs a handler
                signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum
        if hasattr(signal, "SIGCHLD") and signal.SIGCHLD not in self._previous:
            # a Python no-op rather than SIG_DFL: a SIGCHLD already caught must still find a Python handler
            self._previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, _ignore_child_exit)
        if self._waiting:
            raise StopWaiting

    @contextlib.contextmanager
    def waiting_for_data(self):
        self._waiting = True
        try:
            if self.requested:
                raise StopWaiting
            yield
        finally:
            self._waiting = False

    @property
    def requested(self) -> bool:
        return self.received is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else ""


def _ignore_child_exit(signum, frame) -> None:
    pass


def format_losses(parts: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in parts.items()) or "none computed"


def all_finite(parts: dict) -> bool:
    return all(math.isfinite(v) for v in parts.values())


class BadSteps:
    """Steps skipped because a loss or gradient was NaN / Inf, in a row; the total lives in the training state."""

    def __init__(self, limit: int):
        self.limit, self.streak, self.first = limit, 0, 0

    def record(self, ok: bool, state, parts: dict) -> bool:
        """Count the step `state.step`; True when `limit` steps in a row were bad, i.e. the run has diverged."""
        if ok:
            self.streak = 0
            return False
        state.skipped_steps += 1
        self.streak += 1
        self.first = state.step if self.streak == 1 else self.first
        if self.streak < self.limit:
            log.warning("warning: step %d: non-finite loss or gradient (%s): step skipped, no weight changed "
                        "(%d in a row, %d in all)", state.step, format_losses(parts), self.streak, state.skipped_steps)
        return self.streak >= self.limit

    def diverged_message(self, step: int, parts: dict) -> str:
        return (f"training diverged: {self.streak} steps in a row (steps {self.first}-{step}) had a non-finite loss "
                f"or gradient (last losses: {format_losses(parts)}); stopped at step {step}")


class CheckpointSchedule:
    """When last.pt is due between epoch ends (every N steps and/or M minutes), and how many failed writes to bear.

    A failed write (disk full, folder gone) is a warning and is retried at the next due point; `max_failures`
    in a row, or a failure of the run's final write, stop the run with the error. The previous file stays intact.
    """

    def __init__(self, every_steps: int, every_minutes: float, max_failures: int = 3, clock=time.monotonic):
        self.every_steps, self.every_seconds = every_steps, every_minutes * 60.0
        self.max_failures, self.failures, self.clock = max_failures, 0, clock
        self.last_try = clock()

    def due(self, step: int) -> bool:
        by_steps = self.every_steps > 0 and step % self.every_steps == 0
        return by_steps or (self.every_seconds > 0 and self.clock() - self.last_try >= self.every_seconds)

    def write(self, save: Callable[[], None], final: bool) -> bool:
        """Run save(); True when it worked. Its UserError is raised when final or after max_failures in a row."""
        self.last_try = self.clock()
        try:
            save()
        except UserError as e:
            self.failures += 1
            if final or self.failures >= self.max_failures:
                raise
            log.warning("%s; training goes on and tries again at the next checkpoint (%d of %d failed writes in a "
                        "row before the run stops)", e, self.failures, self.max_failures)
            return False
        self.failures = 0
        return True


class RunLock:
    """An exclusive lock on checkpoints/NAME, so two processes never train (and overwrite) the same run.

    flock is released by the kernel when the process dies, even by SIGKILL, so a stale lock cannot block a resume.
    """

    def __init__(self, folder: Path):
        self.file = None
        if fcntl is None:
            return
        path = Path(folder) / ".lock"
        self.file = open(path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.release()
            raise UserError(f"{folder}: this run is being trained by {holder}; wait for it to finish or stop it, "
                            f"or choose another --name") from None
        except OSError as e:  # a file system without locks: train unlocked rather than not at all
            log.info("note: cannot lock %s (%s); make sure no other process trains this run", path, e.strerror or e)
            self.release()
            return
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        self.file.flush()

    def release(self) -> None:
        if self.file is not None:
            self.file.close()  # closing the descriptor drops the lock
            self.file = None
