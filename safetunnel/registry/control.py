"""Per-tunnel control socket: ``tunnels/<id>.sock``, one JSON request line, one JSON reply line.

Requests are ``{"op": "<name>", ...args}``; replies are ``{"ok": true, ...}`` or
``{"ok": false, "error": "<message>"}``. Ops served by a tunnel: ``status``, ``stop`` and
``extend`` (``{"op": "extend", "seconds": 600}`` -> ``{"ok": true, "expires_at": "...Z"}``),
``ticket`` (``{"op": "ticket", "name": "bob"}`` -> ``{"ok": true, "name": "bob", "ticket": ...}``:
the new token's one trip, over this 0600 socket) and ``revoke`` (``{"op": "revoke", "name": ...}``).

Access control is layered: the socket lives in a 0700 directory, is created without group or
world permissions, and every peer's uid is checked with SO_PEERCRED on both ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from safetunnel import jsontext
from safetunnel.errors import SafetunnelError, StateError, UsageError

Handler = Callable[[dict[str, Any]], dict[str, Any]]
MAX_LINE = 64 * 1024
# Linux's sun_path holds 108 bytes; longer paths (deep temp dirs) go through /proc/self/fd.
_MAX_SUN_PATH = 100
_UCRED = struct.Struct("3i")


class ControlUnavailable(StateError):
    """Nobody answers on the control socket (missing, refused or timed out)."""


class ControlError(SafetunnelError):
    """The tunnel answered ``{"ok": false}``; the message is the tunnel's own."""


class ControlUsageError(ControlError):
    """The tunnel refused the request's value (extending past max_ttl): a usage error."""

    exit_code = 2


def peer_uid_allowed(peer_uid: int, own_uid: int | None = None) -> bool:
    """Only the same user may talk to a tunnel (root gets no exception: it has its own tunnels)."""
    return peer_uid == (os.getuid() if own_uid is None else own_uid)


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a connected AF_UNIX socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return pid, uid, gid


@contextlib.contextmanager
def _sun_path(path: Path) -> Iterator[str]:
    """A path short enough for sun_path that names the same file as ``path``."""
    if len(os.fsencode(path)) <= _MAX_SUN_PATH:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def answers(path: Path) -> bool:
    """Something listens on the control socket ``path`` (a running tunnel owns it)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe, _sun_path(path) as where:
        probe.settimeout(1.0)
        try:
            probe.connect(where)
        except OSError:
            return False
        return True


def _read_line(conn: socket.socket) -> bytes:
    buf = bytearray()
    while b"\n" not in buf:
        chunk = conn.recv(4096)
        if not chunk:
            break
        buf += chunk
        if len(buf) > MAX_LINE:
            raise ValueError("request too long")
    return bytes(buf.split(b"\n", 1)[0])


def _send(conn: socket.socket, message: Mapping[str, Any]) -> None:
    conn.sendall(json.dumps(message, default=str).encode("utf-8") + b"\n")


class ControlServer:
    """Serve ``handlers`` (op name -> callable(args) -> reply fields) on a unix socket.

    Requests are handled one at a time on a single named thread. A handler must not block for
    long and must not call :meth:`close` itself (a ``stop`` handler should only ask the owner to
    tear down, then return); a handler error becomes ``{"ok": false, "error": ...}``.
    """

    def __init__(self, path: Path, handlers: Mapping[str, Handler], timeout: float = 5.0) -> None:
        self.path = path
        self.handlers = dict(handlers)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> None:
        """Bind and listen, then start the accept thread. A stale socket file is replaced."""
        if self.path.exists():
            if answers(self.path):  # an id collision with a live tunnel: never steal its socket
                raise StateError(f"{self.path} is in use by another running tunnel")
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()  # left by a crashed predecessor; bind needs it gone
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # bind() creates the inode with 0777 & ~umask and there is no fchmod before bind for
        # sockets, so tighten the umask around it. Racing threads can only make it tighter.
        old = os.umask(0o177)
        try:
            with _sun_path(self.path) as where:
                sock.bind(where)
        except BaseException:
            sock.close()
            raise
        finally:
            os.umask(old)
        sock.listen(8)
        sock.settimeout(0.5)  # fallback wake-up; close() also shuts the socket down
        self._sock = sock
        self._thread = threading.Thread(
            target=self._serve, args=(sock,), name=f"safetunnel-control-{self.path.stem}"
        )
        self._thread.start()

    def __enter__(self) -> ControlServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop accepting, join the thread, remove the socket file. Safe to call twice.

        Called from a handler (on the serving thread) it cannot join itself; the owner's own
        later close() then does the join, so every call but that one returns with the thread gone.
        """
        with self._lock:
            first = not self._closing.is_set()
            self._closing.set()
            sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked accept() at once on Linux
            sock.close()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.timeout + 1.0)
        if first:
            with contextlib.suppress(OSError):  # gone already, or a read-only state dir
                self.path.unlink()

    def _serve(self, sock: socket.socket) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                break  # socket shut down by close()
            with conn:
                conn.settimeout(self.timeout)
                with contextlib.suppress(OSError, ValueError):
                    self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        _, uid, _ = peer_credentials(conn)
        line = _read_line(conn)  # read before any reply, so the client's send never hits EPIPE
        if not peer_uid_allowed(uid):
            _send(conn, {"ok": False, "error": "permission denied: not the tunnel's owner"})
            return
        _send(conn, self.dispatch(line))

    def dispatch(self, line: bytes) -> dict[str, Any]:
        """One request line -> one reply; never raises for bad input or failing handlers."""
        try:
            request = jsontext.loads(line)
        except (ValueError, UnicodeDecodeError):
            return {"ok": False, "error": "bad request: not JSON"}
        if not isinstance(request, dict) or not isinstance(request.get("op"), str):
            return {"ok": False, "error": "bad request: no op"}
        op = request.pop("op")
        handler = self.handlers.get(op)
        if handler is None:
            return {"ok": False, "error": f"unknown op {op!r}"}
        try:
            reply = handler(request)
        except UsageError as err:  # the caller's own request was wrong: exit 2 there too
            return {"ok": False, "error": err.message, "usage": True}
        except SafetunnelError as err:
            return {"ok": False, "error": err.message}
        except Exception as err:  # a bug in one handler must not take the tunnel down
            return {"ok": False, "error": f"internal error in {op}: {type(err).__name__}: {err}"}
        return {**reply, "ok": True}


def request(path: Path, op: str, timeout: float = 5.0, **args: Any) -> dict[str, Any]:
    """Send one request and return the reply (``ok`` is true).

    Raises :class:`ControlUnavailable` when nobody answers and :class:`ControlError` with the
    tunnel's message when it answers ``ok: false``.
    """
    reply = _exchange(path, {"op": op, **args}, timeout)
    if not isinstance(reply, dict):
        raise ControlError(f"the tunnel sent a malformed reply to {op!r}")
    if reply.get("ok") is not True:
        error = ControlUsageError if reply.get("usage") is True else ControlError
        raise error(str(reply.get("error") or f"{op!r} failed"))
    return reply


def _exchange(path: Path, message: Mapping[str, Any], timeout: float) -> Any:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            with _sun_path(path) as where:
                sock.connect(where)
        except (FileNotFoundError, ConnectionRefusedError) as err:
            raise ControlUnavailable(
                f"no control socket answers at {path} ({err.strerror})",
                hint="The tunnel may have exited; `safetunnel list` cleans stale entries.",
            ) from None
        except OSError as err:  # EACCES on someone else's 0700 dir, a connect timeout, ...
            raise ControlUnavailable(f"cannot reach the control socket {path}: {err}") from None
        _, uid, _ = peer_credentials(sock)
        if not peer_uid_allowed(uid):
            raise ControlUnavailable(f"{path} is served by uid {uid}, not by you; refusing")
        try:
            _send(sock, message)
            line = _read_line(sock)
        except (TimeoutError, OSError, ValueError) as err:
            raise ControlUnavailable(f"the tunnel did not answer on {path}: {err}") from None
    try:
        return jsontext.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise ControlError("the tunnel sent a reply that is not JSON") from None
