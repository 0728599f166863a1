"""Errors that reach the user as one line (and exit code 2), never as a traceback."""


class UserError(Exception):
    """Bad input or arguments: the message names the file or flag and the reason."""

    exit_code = 2
