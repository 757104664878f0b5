"""The Gate: one per remote connection, fed bytes, asked for decisions. No socket, clock or thread.

Usage, h11-style::

    gate = Gate(policy, now)
    gate.receive_remote(data)            # b"" = EOF
    while not isinstance(event := gate.next_event(now), (NeedData, Pipe, Close)):
        ...                              # Connect / ToService / ToRemote, in order
"""

from __future__ import annotations

from collections import deque
from typing import Literal

from safetunnel.gate.events import (
    Close,
    Connect,
    End,
    Event,
    GateError,
    NeedData,
    Pipe,
    ToService,
)
from safetunnel.gate.http import HttpSession
from safetunnel.gate.policy import GatePolicy
from safetunnel.gate.sniff import sniff
from safetunnel.gate.tcp import PreambleTooLong, parse_preamble

_Stage = Literal["sniff", "tcp", "http", "over"]


class Gate:
    """Decides, for one remote connection, what reaches the local service."""

    def __init__(self, policy: GatePolicy, now: float) -> None:
        self._policy = policy
        self._deadline = now + policy.header_timeout
        self._buf = bytearray()
        self._queue: deque[Event] = deque()
        self._stage: _Stage = "sniff"
        self._http: HttpSession | None = None
        self._final: Pipe | Close | None = None
        self._remote_eof = False
        self._service_eof = False
        self._connected = False
        self.protocol: str | None = None

    @property
    def deadline(self) -> float:
        """When the header phase times out (monotonic), as set at construction."""
        return self._deadline

    @property
    def current_deadline(self) -> float | None:
        """The deadline NeedData would carry now (None: no deadline while waiting)."""
        if self._final is not None:
            return None
        return self._current_deadline()

    @property
    def requests(self) -> int:
        """Requests that passed authentication (HTTP); 1 after a good TCP preamble."""
        if self._http is not None:
            return self._http.requests
        return 1 if self._connected else 0

    @property
    def exhausted(self) -> bool:
        """The shared failure budget hit max_failures: the tunnel should tear down."""
        budget = self._policy.budget
        return budget is not None and budget.exhausted

    def receive_remote(self, data: bytes) -> None:
        """Feed bytes from the remote client; ``b""`` means the remote closed its side."""
        if self._check_open("remote", data, self._remote_eof):
            return
        self._remote_eof = not data
        if self._http is not None:
            self._http.receive_remote(data)
        else:
            self._buf += data

    def receive_service(self, data: bytes) -> None:
        """Feed bytes from the local service; ``b""`` means the service closed its side."""
        if not self._connected and self._final is None:
            raise GateError("receive_service before Connect: the service is not open yet")
        if self._check_open("service", data, self._service_eof):
            return
        self._service_eof = not data
        if self._http is not None:
            self._http.receive_service(data)

    def _check_open(self, side: str, data: bytes, eof: bool) -> bool:
        """True when the input is to be ignored; GateError when it cannot be honoured."""
        if isinstance(self._final, Pipe):
            raise GateError("the gate is out of the data path after Pipe")
        if self._final is not None:
            return True  # closing anyway; a late read racing the close is harmless
        if eof:
            if data:
                raise GateError(f"data from the {side} after its EOF")
            return True
        return False

    def next_event(self, now: float) -> Event:
        """The next decision; call until NeedData, Pipe or Close."""
        if not self._queue and self._final is None:
            self._advance(now)
        if self._queue:
            return self._queue.popleft()
        if self._final is not None:
            return self._final
        return NeedData(self._current_deadline())

    def _current_deadline(self) -> float | None:
        if self._http is not None:
            return self._http.deadline
        return self._deadline

    def _advance(self, now: float) -> None:
        if self._stage == "sniff":
            self._sniff(now)
        if self._stage == "tcp":
            self._advance_tcp(now)
        elif self._stage == "http" and self._http is not None:
            self._advance_http(now)

    def _sniff(self, now: float) -> None:
        if self.exhausted:
            # The tunnel is being torn down for too many failures; admit nobody meanwhile.
            self._close(End("budget-exhausted", refused=False), now)
        elif now >= self._deadline:
            self._close(End("timeout", refused=True), now)
        elif (kind := sniff(self._buf)) is None:
            if self._remote_eof:
                self._close(End("remote-closed", refused=bool(self._buf)), now)
        elif kind == "unknown" or self._policy.protocol not in ("auto", kind):
            # Nothing is written back: the client's protocol is unknown or not on offer.
            self._close(End("protocol", refused=True), now)
        elif kind == "tcp":
            self._stage, self.protocol = "tcp", "tcp"
        else:
            self._stage, self.protocol = "http", "http"
            self._http = HttpSession(self._policy, self._buf, self._deadline, self._remote_eof)

    def _advance_tcp(self, now: float) -> None:
        if now >= self._deadline:
            self._close(End("timeout", refused=True), now)
            return
        try:
            preamble = parse_preamble(
                self._buf, self._policy.token_hash, self._policy.max_preamble_bytes
            )
        except PreambleTooLong:
            self._close(End("bad-preamble", refused=True), now)
            return
        if preamble is None:
            if self._remote_eof:
                self._close(End("incomplete", refused=True), now)
        elif not preamble.valid:
            self._close(End("unauthorized", refused=True), now)
        else:
            self._connected = True
            self._queue.append(Connect("tcp"))
            if len(self._buf) > preamble.rest_offset:
                self._queue.append(ToService(bytes(memoryview(self._buf)[preamble.rest_offset :])))
            self._buf = bytearray()
            self._pipe()

    def _advance_http(self, now: float) -> None:
        session = self._http
        if session is None:
            return
        session.advance(now)
        self._connected = session.connected
        self._queue.extend(session.out)
        session.out.clear()
        if session.end is not None:
            self._close(session.end, now)
        elif session.piped:
            self._pipe()

    def _pipe(self) -> None:
        self._stage = "over"
        self._final = Pipe()
        self._queue.append(self._final)

    def _close(self, end: End, now: float) -> None:
        budget = self._policy.budget
        delay = budget.record_failure(now) if end.refused and budget is not None else 0.0
        authenticated = self._http.authenticated if self._http is not None else self._connected
        self._stage = "over"
        self._final = Close(end.reason, authenticated and not end.refused, delay)
        self._queue.append(self._final)
