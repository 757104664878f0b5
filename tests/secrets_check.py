"""assert_secret_absent: the check every end-to-end test runs for tokens and passwords.

    assert_secret_absent(secret, [home, config_dir, state_dir], [proc.stdout, proc.stderr])

Paths may be files or directories (searched recursively, symlinks not followed). Outputs may be
str or bytes. The secret is searched as UTF-8 bytes, and also in its JSON-escaped and
percent-encoded forms, so that a secret written through json.dumps or a URL is still caught.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Iterable
from pathlib import Path


def _needles(secret: str) -> set[bytes]:
    forms = {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
    }
    return {form.encode("utf-8") for form in forms if form}


def _files(paths: Iterable[Path | str]) -> Iterable[Path]:
    for entry in paths:
        path = Path(entry)
        if path.is_file() and not path.is_symlink():
            yield path
        elif path.is_dir():
            for root, _dirs, names in os.walk(path):
                for name in names:
                    candidate = Path(root) / name
                    if candidate.is_file() and not candidate.is_symlink():
                        yield candidate


def assert_secret_absent(
    secret: str,
    paths: Iterable[Path | str] = (),
    outputs: Iterable[str | bytes | None] = (),
    allow: Iterable[Path | str] = (),
) -> None:
    """Fail when ``secret`` appears in any file under ``paths`` or in any of ``outputs``.

    ``allow`` lists files that may legitimately hold it (the test keyring's own file).
    """
    assert secret, "an empty secret would match everything"
    needles = _needles(secret)
    allowed = {Path(p).resolve() for p in allow}
    for path in _files(paths):
        if path.resolve() in allowed:
            continue
        data = path.read_bytes()
        found = [n for n in needles if n in data]
        assert not found, f"secret found in file {path}"
    for index, output in enumerate(outputs):
        if output is None:
            continue
        data = output.encode("utf-8") if isinstance(output, str) else output
        assert not any(n in data for n in needles), f"secret found in output #{index}"
