"""What every command line shares: one-line log output, and user errors / interrupts as exit codes."""
from __future__ import annotations

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
