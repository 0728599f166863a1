"""What every command line shares: one-line log output, user errors / interrupts as exit codes, old names (of flags
and commands) that still work and say once which name replaces them, and progress a person can follow on a terminal
or off one."""
from __future__ import annotations

import contextlib
import importlib
import logging
import signal
import sys
import threading
import time
import warnings
from datetime import datetime

from gan_colorizer.errors import Interrupted, UserError

log = logging.getLogger("gan_colorizer")


class _LevelFormatter(logging.Formatter):
    def format(self, record):
        message = super().format(record)
        if record.levelno >= logging.WARNING and not message.startswith(("warning:", "error:")):
            message = f"warning: {message}"
        return message


class _SysStream(logging.StreamHandler):
    """Writes to sys.stdout / sys.stderr as they are when a line is logged (a redirect, pytest's capture), not as
    they were when setup_logging ran: a handler holding a stream since closed printed an error block per line."""

    def __init__(self, name: str):
        self.stream_name = name
        super().__init__()

    @property
    def stream(self):
        return getattr(sys, self.stream_name)

    @stream.setter
    def stream(self, value):  # logging.StreamHandler.__init__ sets one; the stream is looked up instead
        pass


def setup_logging() -> None:
    """Info lines to stdout, warnings to stderr, one line each; the noise of third-party libraries off."""
    log.handlers.clear()
    out = _SysStream("stdout")
    out.addFilter(lambda r: r.levelno < logging.WARNING)
    err = _SysStream("stderr")
    err.setLevel(logging.WARNING)
    for handler in (out, err):
        handler.setFormatter(_LevelFormatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)


class Terminated(KeyboardInterrupt):
    """SIGTERM taken as Ctrl-C (see terminated_as_interrupt); a shell reports it as 143."""

    exit_code = 128 + signal.SIGTERM


def _terminated(signum, frame):
    raise Terminated


@contextlib.contextmanager
def terminated_as_interrupt():
    """Inside, SIGTERM (kill, a batch scheduler's stop) raises Terminated, a KeyboardInterrupt, in the main thread:
    what Ctrl-C cleans up (a file half written to its temporary name) is cleaned up for it too, where its default
    would end the process on the spot. From the main thread only; the previous handler comes back on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_command(action) -> int:
    """Run action(): a UserError prints 'error: MESSAGE' and gives its exit code, Ctrl-C gives 130."""
    try:
        action()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except Interrupted as e:
        print(e, file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:  # a second Ctrl-C, or one before training started: the checkpoints are as last written
        print("interrupted", file=sys.stderr)
        return 130
    return 0


_SAID: set[str] = set()
# console commands named after their modules since issue 22: old name -> (new name, the function both run)
RENAMED_COMMANDS = {"gan-colorizer-export": ("gan-colorizer-onnx", "gan_colorizer.colorize.onnx:main"),
                    "gan-colorizer-plots": ("gan-colorizer-curves", "gan_colorizer.inspect.curves:main")}


def say_renamed(old: str, new: str) -> None:
    """One stderr line, once per process, when an old name is used: which name replaces it."""
    if old not in _SAID:
        _SAID.add(old)
        print(f"note: {old} is now called {new}; the old name still works for now", file=sys.stderr)


def _renamed_command(old: str, argv) -> int:
    new, target = RENAMED_COMMANDS[old]
    say_renamed(old, new)
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)(argv)


def export_main(argv=None) -> int:
    """gan-colorizer-export: the old name of gan-colorizer-onnx."""
    return _renamed_command("gan-colorizer-export", argv)


def plots_main(argv=None) -> int:
    """gan-colorizer-plots: the old name of gan-colorizer-curves."""
    return _renamed_command("gan-colorizer-plots", argv)


def on_terminal() -> bool:
    """Whether a person watches stderr, where a progress bar draws; off a terminal (nohup, a batch scheduler, a pipe)
    a bar's redraws are lost or pile up in a log file, so progress goes as dated lines instead."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced by an object without isatty, or closed
        return False


def timestamp() -> str:
    return datetime.now().strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    """H:MM:SS, with days past 24 hours ('2d 3:04:05'); '?' while unknown."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    days, rest = divmod(int(round(seconds)), 86400)
    text = f"{rest // 3600}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}d {text}" if days else text


class Progress:
    """How far a long job is: a tqdm bar on a terminal; off one, a dated log line (stdout, with the other info lines)
    every `seconds` and at the end, or only when the caller calls line() (seconds=None: training logs at its own
    cadence). shows=False (a torchrun process other than rank 0) shows nothing but still counts."""

    def __init__(self, total: int | None, what: str, unit: str = "img", initial: int = 0,
                 seconds: float | None = 30.0, shows: bool = True, leave: bool = False, clock=time.monotonic):
        self.total, self.what, self.unit, self.seconds, self.clock = total, what, unit, seconds, clock
        self.done = self.first = self.logged = initial
        self.started = self.last_line = clock()
        self.lines = shows and not on_terminal()
        self.bar = None
        if shows and not self.lines:
            from tqdm import tqdm  # here: a command that never shows progress does not pay its import
            self.bar = tqdm(total=total, initial=initial, desc=what, unit=unit, dynamic_ncols=True, leave=leave,
                            file=sys.stderr)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.lines and self.seconds is not None and self.clock() - self.last_line >= self.seconds:
            self.line()

    def each(self, items):
        """Yield the items, counting each once its turn is over; closed when the loop ends or is left."""
        try:
            for item in items:
                yield item
                self.update()
        finally:
            self.close()

    def rate(self) -> float | None:
        """Units per second since this progress started (what the ETA extrapolates); None before the first."""
        elapsed = self.clock() - self.started
        return (self.done - self.first) / elapsed if self.done > self.first and elapsed > 0 else None

    def eta(self) -> float | None:
        rate = self.rate()
        return max(self.total - self.done, 0) / rate if rate and self.total is not None else None

    def status(self) -> str:
        """'evaluate 120/5000 img, 12.3 img/s, ETA 0:06:37'."""
        rate, total = self.rate(), "" if self.total is None else f"/{self.total}"
        speed = f", {rate:.3g} {self.unit}/s" if rate else ""
        left = f", ETA {duration(self.eta())}" if self.total is not None and self.done < self.total else ""
        return f"{self.what} {self.done}{total} {self.unit}{speed}{left}"

    def line(self, text: str | None = None) -> None:
        """Off a terminal: log '<date time> <text>' (default: status()); on one the bar shows it already."""
        if self.lines:
            log.info("%s %s", timestamp(), self.status() if text is None else text)
            self.last_line, self.logged = self.clock(), self.done

    def note(self, values: dict) -> None:
        """Figures shown beside the bar (losses, img/s); lines carry what their caller puts in them."""
        if self.bar is not None:
            self.bar.set_postfix(values)

    def write(self, message: str) -> None:
        """A message to stderr that does not break the bar."""
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)

    def close(self) -> None:
        """Remove the bar; a timed progress logs where it ended, unless its last line said so already."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.seconds is not None and self.done != self.logged:
            self.line()
