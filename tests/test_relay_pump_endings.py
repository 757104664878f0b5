"""How a relayed connection ends: a held-back refusal still closes it, and each EOF is passed
on once its own direction is sent. One relay loop, a unix socket pair as the OpenSSH engine
delivers connections, and a real loopback service.

1. A refusal's answer held back past its connection's last loop step still ends the connection:
the step that ended it ran on the loop, and the answer, coming due on the scheduler's thread,
must not be mistaken for one the loop drains (nothing would then close the connection, and it
has already left the tunnel's slots, so teardown would not either).

2. The client's EOF reaches a service that streams until it reads EOF, even while the client
reads more slowly than the service writes (bytes wait for the client all along), as through
``ssh -R`` or the threaded pump."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable

from pumpkit import TOKEN
from services import Service

from safetunnel.gate.policy import GatePolicy
from safetunnel.sharing import pumprelay
from safetunnel.sharing.pumptypes import Phase, PumpHooks
from safetunnel.sharing.relayloop import RelayLoop
from safetunnel.sharing.stats import ConnCounters
from safetunnel.ssh.openssh.stream import SocketStream


def test_a_held_back_answer_due_during_the_last_step_still_closes_the_connection() -> None:
    ours, client = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(3)
    loop = RelayLoop("test-relay-endings", time.monotonic)
    held: list[Callable[[], None]] = []
    finished = threading.Event()

    def later(_delay: float, call: Callable[[], None]) -> bool:
        held.append(call)  # the Later thread's; it comes due in _delay seconds
        return True

    def on_finished(_c: ConnCounters, _allowed: bool, _reason: str) -> None:
        # The loop thread is still inside the refused connection's step here; the delay
        # elapses now, and the Later thread answers.
        answerer = threading.Thread(target=held[0], name="later")
        answerer.start()
        answerer.join(5)
        finished.set()

    hooks = PumpHooks(
        policy=GatePolicy.for_token(TOKEN, "st-test"),
        service=("127.0.0.1", 1),
        submit=lambda fn: None,
        on_decision=lambda _c, _a, _r: None,
        on_finished=on_finished,
        refusal_delay=lambda _source, _now: 0.25,
        later=later,
        relay=loop,
    )
    pump = pumprelay.make_pump(SocketStream(ours, ("127.0.0.1", 0)), ConnCounters("o"), hooks)
    try:
        pump.start(pump.run)
        client.sendall(b"NOT HTTP\r\n\r\n")  # refused: bad-request, its answer held back
        assert finished.wait(5)
        got = bytearray()
        try:
            while chunk := client.recv(65536):
                got += chunk
        except TimeoutError:
            raise AssertionError(
                f"no close after the held-back answer (got {bytes(got[:40])!r}..., "
                f"pump phase {pump.phase.value})"
            ) from None
        assert got.startswith(b"HTTP/1.1 400")
        assert pump.phase is Phase.CLOSED
    finally:
        pump.close()
        client.close()
        loop.close()


def test_the_clients_eof_reaches_a_streaming_service_while_the_client_reads_slowly() -> None:
    seen_eof = threading.Event()
    chunk = b"x" * 65536

    def stream_until_eof(conn: socket.socket, _record: Callable[[bytes], None]) -> None:
        conn.setblocking(False)
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            readable, writable, _ = select.select([conn], [conn], [], 0.1)
            if readable:
                try:
                    data = conn.recv(65536)
                except BlockingIOError:
                    data = b"?"
                if not data:
                    seen_eof.set()
                    return
            if writable:
                with contextlib.suppress(BlockingIOError):
                    conn.send(chunk)

    ours, client = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(5)
    loop = RelayLoop("test-relay-endings", time.monotonic)
    with Service(stream_until_eof) as service:
        hooks = PumpHooks(
            policy=GatePolicy.for_token(TOKEN, "st-test", protocol="tcp"),
            service=("127.0.0.1", service.port),
            submit=lambda fn: None,
            on_decision=lambda _c, _a, _r: None,
            on_finished=lambda _c, _a, _r: None,
            relay=loop,
        )
        stream = SocketStream(ours, ("127.0.0.1", 0))
        pump = pumprelay.make_pump(stream, ConnCounters("o"), hooks)
        try:
            pump.start(pump.run)
            client.sendall(f"SAFETUNNEL {TOKEN}\n".encode())
            assert client.recv(65536)  # the stream flows
            time.sleep(0.3)  # the buffers and the pump's outbox towards the client fill
            client.shutdown(socket.SHUT_WR)  # the client is done sending
            until = time.monotonic() + 3
            while not seen_eof.is_set() and time.monotonic() < until:
                client.recv(16384)  # a slow reader: ~800 KB/s
                time.sleep(0.02)
            assert seen_eof.is_set(), "the service never read the client's EOF"
        finally:
            pump.close()
            client.close()
            loop.close()
