"""Where safetunnel keeps its config and state: the platform's per-user dirs, or the
``SAFETUNNEL_CONFIG_DIR`` / ``SAFETUNNEL_STATE_DIR`` overrides (which tests use).

Nothing is created here; callers use :func:`safetunnel.fsutil.ensure_private_dir` when they write.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "safetunnel"


def config_dir() -> Path:
    """``$SAFETUNNEL_CONFIG_DIR``, else the platform's user config dir."""
    override = os.environ.get("SAFETUNNEL_CONFIG_DIR")
    return Path(override) if override else Path(platformdirs.user_config_dir(APP))


def state_dir() -> Path:
    """``$SAFETUNNEL_STATE_DIR``, else the platform's user state dir."""
    override = os.environ.get("SAFETUNNEL_STATE_DIR")
    return Path(override) if override else Path(platformdirs.user_state_dir(APP))


def audit_path() -> Path:
    return state_dir() / "audit.jsonl"


def own_known_hosts() -> Path:
    """safetunnel's own known_hosts; the user's ``~/.ssh/known_hosts`` is never written."""
    return config_dir() / "known_hosts"


def config_file() -> Path:
    return config_dir() / "config.toml"
