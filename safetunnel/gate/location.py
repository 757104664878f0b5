"""The path a link's 303 sends the browser to: always a path on this share, never another origin.

The ``Location`` is built from what the client asked for, so it is normalised the way a browser
would read it before the browser gets the chance: a backslash is a slash, ``.``/``..`` segments
(also percent-encoded, which browsers decode for this) are resolved, and leading slashes collapse,
so nothing can come out as ``//host`` (a scheme-relative URL, i.e. another origin).
"""

from __future__ import annotations

from urllib.parse import urlsplit

_DOT = (b".", b"%2e")
_DOTDOT = (b"..", b".%2e", b"%2e.", b"%2e%2e")


def same_origin_path(path: bytes) -> bytes:
    """``path`` (of a request target) as an absolute path with no dot segments."""
    path = path.replace(b"\\", b"/")
    if not path.startswith(b"/"):
        # An absolute-form target ("http://host/p") keeps only its path; "*" and the like: "/".
        path = urlsplit(path).path if b"://" in path else b"/"
    out: list[bytes] = []
    segments = path.split(b"/")[1:]
    for index, segment in enumerate(segments):
        lowered = segment.lower()
        if lowered in _DOTDOT:
            if out:
                out.pop()
        elif lowered not in _DOT:
            out.append(segment)
            continue
        if index == len(segments) - 1:
            out.append(b"")  # "/a/b/.." is the directory "/a/", with its slash
    return b"/" + b"/".join(out).lstrip(b"/")
