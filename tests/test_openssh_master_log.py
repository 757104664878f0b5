"""The control master's stderr: what the engine keeps of it, and that a master whose forward is
up still has its words read (they name why it exited)."""

from __future__ import annotations

import fcntl
import os
import socket
import threading

import pytest
from conftest import Sandbox
from sshd import SSHD

from safetunnel.ssh.engine import ByteStream
from safetunnel.ssh.openssh import masterlog as master
from safetunnel.ssh.openssh.connect import open_openssh_session
from safetunnel.ssh.target import SSHTarget


def test_a_burst_keeps_only_its_last_lines_but_counts_them_all() -> None:
    log = master.MasterLog()
    burst = [f"debug1: line {n}\r".encode() for n in range(master._KEEP_LINES + 50)]
    log.add_raw(burst)
    assert log.seen == len(burst)
    kept = log.tail(master._KEEP_LINES + 50)
    assert len(kept) == master._KEEP_LINES
    assert kept[0] == "debug1: line 50" and kept[-1] == f"debug1: line {len(burst) - 1}"
    log.add_raw([b"Timeout, server not responding."])
    assert log.since(len(burst)) == ["Timeout, server not responding."]
    assert log.wait_for("not responding", len(burst), timeout=0)


def test_the_accepted_host_keys_outlast_a_banner_longer_than_the_lines_kept() -> None:
    log = master.MasterLog()
    hop = b"debug1: Server host key: ssh-ed25519 SHA256:hop\r"
    host = b"debug1: Server host key: ssh-ed25519 SHA256:host\r"
    banner = [f"Authorised use only, line {n}".encode() for n in range(master._KEEP_LINES + 50)]
    log.add_raw([hop, b"debug1: Authenticated to the hop", host, *banner])
    assert not any("Server host key" in line for line in log.tail(master._KEEP_LINES))
    assert log.host_keys() == [hop.decode().rstrip("\r"), host.decode().rstrip("\r")]
    match = master.SERVER_KEY.search(log.host_keys()[-1])
    assert match is not None and match.groups() == ("ssh-ed25519", "SHA256:host")


def test_a_watcher_hears_its_lines_and_its_failure_stops_nothing() -> None:
    log = master.MasterLog()
    heard: list[str] = []

    def broken(line: str) -> None:
        raise RuntimeError("a watcher's bug")

    log.on_line("open failed:", broken)
    log.on_line("open failed:", heard.append)
    log.add_raw([b"debug1: channel 2: new", b"channel 2: open failed: connect failed: refused\r"])
    assert heard == ["channel 2: open failed: connect failed: refused"]
    assert log.seen == 2  # kept, though the first watcher failed


def test_the_reader_gathers_longer_only_as_far_as_the_pipe_holds_a_busy_master() -> None:
    reader, writer = os.pipe()
    try:
        gather = master._widen_pipe(reader)
        room = fcntl.fcntl(reader, fcntl.F_GETPIPE_SZ)
    finally:
        os.close(reader)
        os.close(writer)
    # Never longer than the pipe holds what the busiest master writes meanwhile (beyond the
    # short gathering that was always allowed), never longer than the settled gathering.
    holds = room / master._BUSIEST_BYTES_PER_SECOND
    assert master._GATHER_SECONDS <= gather <= max(master._GATHER_SECONDS, holds)
    assert gather <= master._SETTLED_GATHER_SECONDS
    assert gather > master._GATHER_SECONDS or holds <= master._GATHER_SECONDS  # longer if it can


@pytest.mark.sshd
def test_a_settled_master_still_has_its_words_read(sandbox: Sandbox, shared_sshd: SSHD) -> None:
    key = str(shared_sshd.client_key_path)
    session = open_openssh_session(
        SSHTarget(shared_sshd.host, shared_sshd.port, shared_sshd.user, (key,)),
        known_hosts=[shared_sshd.known_hosts],
        on_unknown_key=None,
        keepalive=5,
    )
    arrived = threading.Event()
    streams: list[ByteStream] = []

    def take(stream: ByteStream) -> None:
        streams.append(stream)
        arrived.set()

    try:
        listener = session.forward("127.0.0.1", 0, take)
        assert session._master._settled  # the forward is up: the reader gathers for longer
        seen = session._master.log.seen
        with socket.create_connection(("127.0.0.1", listener.port), timeout=5):
            assert arrived.wait(5)
        # The master's DEBUG1 lines about that connection are still read, settled or not.
        assert session._master.log.wait_for("forwarded-tcpip", seen, timeout=5)
    finally:
        for stream in streams:
            stream.close()
        session.close()
