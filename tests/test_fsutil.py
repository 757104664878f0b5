from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from safetunnel import fsutil
from safetunnel.errors import StateError


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_dir_created_0700_with_parents(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "c"
    fsutil.ensure_private_dir(target)
    assert mode(target) == 0o700
    assert mode(tmp_path / "a") == 0o700


def test_group_writable_dir_refused(tmp_path: Path) -> None:
    target = tmp_path / "shared"
    target.mkdir()
    target.chmod(0o770)
    with pytest.raises(StateError, match="writable by group or others"):
        fsutil.ensure_private_dir(target)


def test_atomic_write_creates_0600_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "rec.json"
    fsutil.atomic_write(path, b"one")
    assert path.read_bytes() == b"one"
    assert mode(path) == 0o600
    fsutil.atomic_write(path, b"two")
    assert path.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["rec.json"]


def test_create_exclusive_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "token"
    fsutil.create_exclusive(path, b"secret")
    assert mode(path) == 0o600
    with pytest.raises(FileExistsError):
        fsutil.create_exclusive(path, b"other")
    assert path.read_bytes() == b"secret"


def test_create_exclusive_refuses_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    link = tmp_path / "link"
    os.symlink(victim, link)
    with pytest.raises(FileExistsError):
        fsutil.create_exclusive(link, b"x")
    assert victim.read_text() == "keep"


def test_append_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    fsutil.append_line(path, "a")
    fsutil.append_line(path, "b\n")
    assert path.read_text() == "a\nb\n"
    assert mode(path) == 0o600
