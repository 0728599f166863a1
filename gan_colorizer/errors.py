"""Errors that reach the user as one line, never as a traceback; the exit code tells scripts what happened."""

import re


class UserError(Exception):
    """Bad input or arguments: the message names the file or flag and the reason."""

    exit_code = 2


class TrainingDiverged(UserError):
    """Too many optimizer steps in a row had a NaN / Inf loss or gradient; last.pt still holds the last good state."""

    exit_code = 3


class Interrupted(Exception):
    """A clean stop on SIGINT / SIGTERM (last.pt written); exit code 128 + the signal number, as a shell reports it."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


def reason(error: BaseException, empty: str | None = None) -> str:
    """An exception as the reason part of a one-line message: its first line, at most 200 characters; `empty` (or the
    exception's type) when it says nothing. An OSError gives its strerror, without the file name repeated."""
    text = (getattr(error, "strerror", None) or str(error)).strip()
    return text.splitlines()[0][:200] if text else (empty or type(error).__name__)


def shown(text, limit: int = 300) -> str:
    """Text that came from a file (a name inside a shard, a reason read from a cache) as data on one line: control
    characters (escape codes, newlines) written as repr writes them, at most `limit` characters."""
    text = str(text)
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[:limit] + "..."


def weights_only_refusal(error: BaseException) -> str | None:
    """torch.load(weights_only=True)'s refusal of a file, in our words, or None for any other failure. torch's own
    text advises loading with weights_only=False, which would run whatever code the file holds: never repeat it."""
    text = str(error)
    if "Cannot use weights_only=True" in text:  # the legacy .tar format, or bytes that look like it
        return "a weights-only load cannot read its format (torch's legacy .tar, or damaged); nothing in it was run"
    if "Weights only load failed" not in text:
        return None
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found is None:
        return "a weights-only load refuses it (damaged, or not a file torch.save wrote); nothing in it was run"
    return (f"it holds Python objects ({found.group(1)}) that a weights-only load refuses to build; nothing in it "
            f"was run")
