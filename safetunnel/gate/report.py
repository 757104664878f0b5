"""What the sharer is told about one HTTP request: its method and path, made safe to show.

A request line is written by the client, so nothing of it is shown as sent: the path loses its
query and fragment (a query can carry secrets, and a link's token travels in one), an
absolute-form target loses its scheme and authority (userinfo there can be a password), anything
but printable ASCII becomes ``?`` (no control character or escape sequence reaches a terminal),
token-shaped text is redacted, and both are capped in length.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from safetunnel.gate.events import RequestDone
from safetunnel.tokens import TOKEN_RE

MAX_METHOD = 16
MAX_PATH = 160
_CUT = "..."
# Every byte but printable ASCII (space included: it would split a log's fields) becomes "?".
_SHOWN = bytes(b if 0x21 <= b < 0x7F else ord("?") for b in range(256))


def shown_method(method: bytes) -> str:
    return _capped(_printable(method[: MAX_METHOD + 1]), MAX_METHOD)


def shown_path(target: bytes) -> str:
    """The path of a request target, without query or fragment, safe for a terminal."""
    text = _printable(bytes(target).split(b"?", 1)[0].split(b"#", 1)[0])
    if not text.startswith("/") and "://" in text:
        text = urlsplit(text).path or "/"
    return _capped(TOKEN_RE.sub("[redacted]", text), MAX_PATH)


def _printable(raw: bytes) -> str:
    return bytes(raw).translate(_SHOWN).decode("ascii")


def _capped(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(_CUT)] + _CUT


class RequestMeter:
    """The request of one connection that is with the service (the gate serves them in turn):
    what it moved, and when. The text shown is only made once its answer is complete."""

    def __init__(self) -> None:
        self._request: tuple[bytes, bytes, float] | None = None  # method, target, started
        self._in = 0  # bytes passed to the service for it
        self._out = 0  # bytes passed to the client for it

    def start(self, method: bytes, target: bytes, now: float, sent: int) -> None:
        self._request, self._in, self._out = (bytes(method), bytes(target), now), sent, 0

    def sent(self, pieces: list[bytes]) -> None:
        self._in += sum(len(piece) for piece in pieces)

    def relayed(self, pieces: list[bytes]) -> None:
        self._out += sum(len(piece) for piece in pieces)

    def done(
        self, status: int, now: float, *, extra_out: int = 0, reached_service: bool = True
    ) -> list[RequestDone]:
        """The report of the request in flight, once: a list of one, or of none when there is
        no request in flight (so it extends a list of events as it is)."""
        if self._request is None:
            return []
        (method, target, started), self._request = self._request, None
        done = RequestDone(
            method=shown_method(method),
            path=shown_path(target),
            status=status,
            started=started,
            ended=now,
            bytes_in=self._in,
            bytes_out=self._out + extra_out,
            reached_service=reached_service,
        )
        return [done]

    def unreachable(self, now: float, reply: bytes) -> list[RequestDone]:
        """The service could not be opened for it: nothing reached the service, and the client
        got the gate's ``reply`` instead."""
        self._in, self._out = 0, 0
        return self.done(502, now, extra_out=len(reply), reached_service=False)

    def answered_by_gate(
        self, method: bytes, target: bytes, status: int, now: float, reply: bytes
    ) -> list[RequestDone]:
        """A request the gate answered itself, without the service (a link's 303)."""
        self.start(method, target, now, 0)
        return self.done(status, now, extra_out=len(reply), reached_service=False)
