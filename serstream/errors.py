"""Errors meant for the person at the terminal: one line, no traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (bad file, busy port, unknown device...).

    The CLI prints ``serstream: error: <message>`` and exits with ``exit_code``;
    tracebacks are shown only under ``--log-level debug``.
    """

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class AudioFileError(UserError):
    """An audio file that cannot be decoded into a usable signal."""


class ModelError(UserError):
    """A model file that is missing, malformed, or one this daemon cannot serve."""


class DeviceError(UserError):
    """An audio input device that is absent, unknown or failing."""
