"""paramiko's one use of ``invoke`` (``Match exec`` in ssh_config), loaded only when needed.

``paramiko.config`` imports ``invoke`` at import time, and ``invoke`` pulls in ``unittest.mock``
and ``asyncio``: about 13 MB of RSS in every share process for a feature only ``Match exec``
uses. The CLI blocks that import at startup (:func:`block_for_paramiko`); the code that reads an
ssh_config calls :func:`allow_match_exec` first, which loads it back when the file uses ``exec``.
"""

from __future__ import annotations

import importlib
import sys


def block_for_paramiko() -> None:
    """Make ``import invoke`` fail until :func:`allow_match_exec` (CLI processes only)."""
    if "invoke" not in sys.modules and "paramiko" not in sys.modules:
        sys.modules["invoke"] = None  # type: ignore[assignment]  # the documented import block


def allow_match_exec(config_text: str) -> None:
    """Give paramiko its ``invoke`` back when this ssh_config text may use ``Match exec``."""
    if "exec" not in config_text.lower():
        return
    if "invoke" in sys.modules and sys.modules["invoke"] is None:
        del sys.modules["invoke"]
    config = importlib.import_module("paramiko.config")
    if getattr(config, "invoke", None) is None:
        config.invoke = importlib.import_module("invoke")  # type: ignore[attr-defined]
