"""Errors that reach the user as one line, never as a traceback; the exit code tells scripts what happened."""


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
