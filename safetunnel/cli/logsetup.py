"""Where the library's log records go when safetunnel runs as a command: stderr, one line each.

Without a handler, Python's fallback prints a record's traceback too, and a warning logged with
``exc_info`` (a broken observer, a failed accept) would put a traceback in front of a user. Here
a record is one line with the exception's type and message; ``--verbose`` keeps the traceback.
"""

from __future__ import annotations

import logging
import sys

_LOGGER = "safetunnel"


class OneLine(logging.Formatter):
    """``safetunnel: message (ErrorType: error)``, on one line unless verbose."""

    def __init__(self, verbose: bool) -> None:
        super().__init__("safetunnel: %(message)s")
        self._verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        if self._verbose:
            return super().format(record)
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            err = record.exc_info[1]
            text = f"{text} ({type(err).__name__}: {err})"
        return "safetunnel: " + " ".join(text.split())


def setup(verbose: bool) -> None:
    """Send the library's warnings and errors to stderr in :class:`OneLine` form. Idempotent."""
    logger = logging.getLogger(_LOGGER)
    for handler in list(logger.handlers):
        if getattr(handler, "safetunnel_cli", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLine(verbose))
    handler.setLevel(logging.WARNING)
    handler.safetunnel_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.propagate = False
