"""Secrets the user typed, carried where a prompt cannot reach: never argv, env or a file.

Two carriers. :func:`dump`/:func:`read_stdin` frame them for the pipe from a ``--background``
foreground to its detached share's stdin (the foreground asked; the child has no terminal).
:class:`SecretBroker` is a 0600 unix socket in a 0700 directory, open only while OpenSSH logs
in: the askpass helper (a process ssh starts) fetches a handed secret from it, each one once,
and reports what the user typed on the terminal, so that a foreground can hand it on. It
answers only processes of the same user (``SO_PEERCRED``).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safetunnel import jsontext
from safetunnel.secrets.names import SecretName

_MAX_MESSAGE = 65536


def _name(username: str) -> SecretName:
    kind, _, subject = username.partition(":")
    if kind not in ("password", "passphrase") or not subject:
        raise ValueError(f"not a secret name: {username!r}")
    return SecretName(kind, subject)  # type: ignore[arg-type]  # checked just above


def dump(secrets: Mapping[SecretName, str]) -> bytes:
    """One JSON line: ``{keyring username: secret}``."""
    return (json.dumps({name.username: value for name, value in secrets.items()}) + "\n").encode()


def load(data: bytes) -> dict[SecretName, str]:
    """What :func:`dump` wrote; empty for nothing (a foreground that typed nothing)."""
    text = data.decode("utf-8").strip()
    raw: Any = jsontext.loads(text) if text else {}
    if not isinstance(raw, dict):
        raise ValueError("handed secrets must be one JSON object")
    return {_name(str(k)): str(v) for k, v in raw.items()}


def read_stdin() -> dict[SecretName, str]:
    """Read the pipe on stdin to its end; stdin is then /dev/null, so nothing is read twice."""
    chunks: list[bytes] = []
    while chunk := os.read(0, _MAX_MESSAGE):
        chunks.append(chunk)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    return load(b"".join(chunks))


class SecretBroker:
    """Serves ``handed`` secrets once each and collects ``typed`` ones, on ``path``.

    A request asking again for a secret typed earlier means ssh found that answer wrong, so it
    is dropped from :attr:`typed`. Use as a context manager; :meth:`close` is idempotent and
    removes the socket.
    """

    def __init__(self, path: Path, handed: Mapping[SecretName, str]) -> None:
        self.path = path
        self.typed: dict[SecretName, str] = {}
        self._handed = dict(handed)
        self._lock = threading.Lock()
        old = os.umask(0o177)
        try:
            self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._server.bind(str(path))
        finally:
            os.umask(old)
        self._server.listen(8)
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="askpass-broker", daemon=True)
        self._thread.start()

    def __enter__(self) -> SecretBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._handed.clear()
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        self.path.unlink(missing_ok=True)
        self._thread.join(5)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return  # closed
            with conn, contextlib.suppress(OSError, ValueError):
                if _peer_uid(conn) == os.getuid():
                    conn.sendall(self._answer(_recv(conn)))

    def _answer(self, request: dict[str, Any]) -> bytes:
        name = _name(str(request.get("name", "")))
        with self._lock:
            if request.get("op") == "typed" and isinstance(request.get("secret"), str):
                self.typed[name] = request["secret"]
                return b"{}\n"
            self.typed.pop(name, None)  # asked again: the answer typed before was wrong
            secret = self._handed.pop(name, None)
        return (json.dumps({} if secret is None else {"secret": secret}) + "\n").encode()


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def _recv(conn: socket.socket) -> dict[str, Any]:
    conn.settimeout(5.0)
    data = b""
    while not data.endswith(b"\n") and len(data) < _MAX_MESSAGE:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    request = jsontext.loads(data.decode("utf-8"))
    if not isinstance(request, dict):
        raise ValueError("a request is one JSON object")
    return request


def ask_broker(path: str, request: dict[str, str]) -> str | None:
    """The askpass helper's side: one request, the secret in the answer (or None)."""
    with contextlib.suppress(OSError, ValueError), socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(5.0)
        conn.connect(path)
        conn.sendall((json.dumps(request) + "\n").encode())
        answer = _recv(conn)
        secret = answer.get("secret")
        return secret if isinstance(secret, str) else None
    return None
