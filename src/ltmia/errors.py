"""Error classes raised at ltmia's boundaries.

Every error a user can cause is an ``LtmiaError`` whose message is one line naming the problem and the fix;
the CLI prints it without a traceback. Inner code trusts its inputs and raises nothing of its own.
"""

from __future__ import annotations


class LtmiaError(Exception):
    """Base class: a problem with the user's input or environment, shown as one line."""


class UnknownNameError(LtmiaError, KeyError):
    """A name (corpus, architecture, attack, ...) that is not in its registry."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class NotEnoughTextsError(LtmiaError):
    """A corpus too small for the requested split sizes."""


class OutputExistsError(LtmiaError):
    """An output directory exists and holds something we must not overwrite."""


class InputError(LtmiaError):
    """Unreadable, empty or malformed user input (files, columns, model directories)."""


class SettingsError(InputError):
    """A setting that is unknown, of the wrong type or out of range: names the key (``ltmia.settings``).

    ``detail`` is the message without the place, for a caller that names the place better (a config section).
    """

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = message if detail is None else detail


class DamagedError(InputError):
    """An artefact whose files no longer match what ltmia recorded when writing them, or cannot be read."""


class BusyError(LtmiaError):
    """Another ltmia process is writing the same output right now."""


class DivergedError(LtmiaError):
    """Training (a fine-tune or a classifier) whose loss or scores became NaN or infinite; what would be
    trained on from there is garbage, so nothing is written."""
