"""The TLS stream the pumps read plaintext from, over a real socket pair: an ``ssl`` client on one
end, :class:`TlsStream` around the OpenSSH engine's socket stream on the other."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from safetunnel.gate.tls import TlsRefused
from safetunnel.sharing.pumptls import TlsStream, tls_streams
from safetunnel.sharing.tlscert import make_identity
from safetunnel.ssh.engine import ByteStream
from safetunnel.ssh.openssh.stream import SocketStream

IDENTITY = make_identity(["h.example"], datetime.now(UTC) + timedelta(hours=1))


@pytest.fixture
def pair() -> Iterator[tuple[TlsStream, socket.socket]]:
    server, client = socket.socketpair()
    stream = TlsStream(SocketStream(server, ("127.0.0.1", 0)), IDENTITY.context)
    yield stream, client
    stream.close()
    client.close()


def tls_client(sock: socket.socket) -> ssl.SSLSocket:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context.wrap_socket(sock, server_hostname="h.example")


def in_thread(work: object) -> threading.Thread:
    assert callable(work)
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_plaintext_both_ways_and_a_clean_close(pair: tuple[TlsStream, socket.socket]) -> None:
    stream, raw = pair
    got: list[bytes] = []

    def client() -> None:
        with tls_client(raw) as tls:
            tls.sendall(b"SAFETUNNEL st_x\n" + b"a" * 100_000)
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
            got.append(data)

    thread = in_thread(client)
    received = b""
    while len(received) < 100_016:
        chunk = stream.read(256 * 1024, timeout=10)
        assert chunk
        received += chunk
    assert received == b"SAFETUNNEL st_x\n" + b"a" * 100_000
    stream.write_all(b"b" * 50_000)
    stream.half_close()  # close_notify: the client's recv ends cleanly, not with an error
    thread.join(10)
    assert got == [b"b" * 50_000]


def test_plain_text_is_refused(pair: tuple[TlsStream, socket.socket]) -> None:
    stream, raw = pair
    raw.sendall(b"GET / HTTP/1.1\r\nX-Safetunnel-Token: st_x\r\n\r\n")
    with pytest.raises(TlsRefused) as caught:
        stream.read(65536, timeout=10)
    assert caught.value.audit_reason == "tls"


def test_a_silent_client_times_out_and_an_eof_reads_empty(
    pair: tuple[TlsStream, socket.socket],
) -> None:
    stream, raw = pair
    with pytest.raises(TimeoutError):
        stream.read(65536, timeout=0.2)
    raw.shutdown(socket.SHUT_WR)
    assert stream.read(65536, timeout=10) == b""


def test_decrypted_but_unread_input_counts_as_input() -> None:
    """A notifying stream re-armed while plaintext waits in the wrapper fires at once."""

    class Notifying(SocketStream):
        def notify_on_input(self, callback: object) -> bool:
            return True

    server, client = socket.socketpair()
    stream = TlsStream(Notifying(server, ("127.0.0.1", 0)), IDENTITY.context)
    thread = in_thread(lambda: tls_client(client).sendall(b"x" * 1000))
    assert stream.read(10, timeout=10) == b"x" * 10
    fired: list[bool] = []
    assert stream.notify_on_input(lambda: fired.append(True))
    assert fired == [True]
    thread.join(10)
    stream.close()
    client.close()


def test_without_a_context_the_handler_gets_the_stream_itself() -> None:
    seen: list[ByteStream] = []
    handler = tls_streams(None, seen.append)
    server, client = socket.socketpair()
    plain = SocketStream(server, ("127.0.0.1", 0))
    handler(plain)
    tls_streams(IDENTITY.context, seen.append)(plain)
    assert seen[0] is plain and isinstance(seen[1], TlsStream)
    plain.close()
    client.close()
