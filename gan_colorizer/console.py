"""What every command line shares: one-line log output, user errors / interrupts as exit codes, and old names
(of flags and commands) that still work and say once which name replaces them."""
from __future__ import annotations

import importlib
import logging
import sys
import warnings

from gan_colorizer.errors import Interrupted, UserError


class _LevelFormatter(logging.Formatter):
    def format(self, record):
        message = super().format(record)
        if record.levelno >= logging.WARNING and not message.startswith(("warning:", "error:")):
            message = f"warning: {message}"
        return message


def setup_logging() -> None:
    """Info lines to stdout, warnings to stderr, one line each; the noise of third-party libraries off."""
    log = logging.getLogger("gan_colorizer")
    log.handlers.clear()
    out = logging.StreamHandler(sys.stdout)
    out.addFilter(lambda r: r.levelno < logging.WARNING)
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    for handler in (out, err):
        handler.setFormatter(_LevelFormatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)


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
