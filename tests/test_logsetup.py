"""A warning the library logs with its exception reaches the user as one line, not a traceback
(``--verbose`` keeps the traceback)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from safetunnel.cli import logsetup


@pytest.fixture
def restored() -> Iterator[None]:
    logger = logging.getLogger("safetunnel")
    handlers, propagate = list(logger.handlers), logger.propagate
    yield
    logger.handlers[:] = handlers
    logger.propagate = propagate


def warn_with_exception() -> None:
    try:
        raise OSError(24, "Too many open files")
    except OSError:
        logging.getLogger("safetunnel.ssh.openssh").warning("accepting failed", exc_info=True)


def test_one_line_without_a_traceback(restored: None, capsys: pytest.CaptureFixture[str]) -> None:
    logsetup.setup(verbose=False)
    logsetup.setup(verbose=False)  # idempotent: still one handler
    warn_with_exception()
    logging.getLogger("safetunnel.sharing").info("not shown")
    err = capsys.readouterr().err
    assert err == "safetunnel: accepting failed (OSError: [Errno 24] Too many open files)\n"


def test_verbose_keeps_the_traceback(restored: None, capsys: pytest.CaptureFixture[str]) -> None:
    logsetup.setup(verbose=True)
    warn_with_exception()
    err = capsys.readouterr().err
    assert err.startswith("safetunnel: accepting failed\n") and "Traceback" in err
