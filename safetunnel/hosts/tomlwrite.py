"""A tiny TOML writer for safetunnel's flat config schema.

The standard library reads TOML (tomllib) but cannot write it. Our schema is top-level scalars plus
one level of ``[hosts.NAME]`` tables of scalars, so a few lines of careful escaping are cheaper and
safer than a new dependency. Anything outside that shape is refused rather than written wrongly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

Scalar = str | int | bool
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def quote(text: str) -> str:
    """A TOML basic string that reads back as exactly ``text``.

    TOML forbids raw control characters (U+0000-U+001F and U+007F) in basic strings, so every one
    of them is escaped, not only the common ones.
    """
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def key(name: str) -> str:
    """A key as written: bare when TOML allows it, quoted otherwise (dots would nest)."""
    return name if _BARE_KEY.match(name) else quote(name)


def scalar(value: Scalar) -> str:
    # bool before int: bool is a subclass of int and must become true/false, not 1/0.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return quote(value)
    raise TypeError(f"cannot write {type(value).__name__} to config.toml")


def dumps(
    top: Mapping[str, Scalar | None],
    tables: Mapping[str, Mapping[str, Mapping[str, Scalar | None]]],
) -> str:
    """Render top-level scalars, then ``[group.name]`` tables. ``None`` values are left out."""
    lines = [f"{key(k)} = {scalar(v)}" for k, v in top.items() if v is not None]
    for group, members in tables.items():
        for name, fields in members.items():
            lines.append("")
            lines.append(f"[{key(group)}.{key(name)}]")
            lines.extend(f"{key(k)} = {scalar(v)}" for k, v in fields.items() if v is not None)
    return "\n".join(lines) + "\n"
