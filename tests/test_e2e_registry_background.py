"""End to end: `share --background` failure paths, and many shares started at once."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from e2e import E2E, LIST_KEYS, bg_share_argv, pid_running
from sshd import SSHD

pytestmark = pytest.mark.sshd


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _assert_nothing_left(e2e: E2E) -> None:
    tunnels = e2e.sandbox.state_dir / "tunnels"
    assert not tunnels.exists() or list(tunnels.iterdir()) == []
    assert list(e2e.own_processes()) == [], "a share process was left running"


def test_background_with_nothing_listening_fails_in_the_foreground(
    e2e: E2E, shared_sshd: SSHD
) -> None:
    port = _free_port()
    out = e2e.run(*bg_share_argv(port, "1m", "--json", via=shared_sshd), timeout=60)
    assert out.returncode == 7, (out.stdout, out.stderr)
    assert out.stdout == ""
    assert f"Error: nothing is listening on 127.0.0.1:{port}" in out.stderr
    assert "hint: start the service first" in out.stderr
    _assert_nothing_left(e2e)
    assert not (e2e.sandbox.state_dir / "logs").exists(), "no child should have been started"


class OneShotService:
    """Accepts one connection (the foreground's pre-flight probe), then stops listening."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(1)
        self.port = int(self._sock.getsockname()[1])
        self._thread = threading.Thread(target=self._once, name="test-one-shot")
        self._thread.start()

    def _once(self) -> None:
        conn, _ = self._sock.accept()
        with conn:
            conn.recv(1024)  # until the probe half-closes
        self._sock.close()

    def close(self) -> None:
        if self._thread.is_alive():
            with socket.create_connection(("127.0.0.1", self.port), 2):
                pass
        self._thread.join(5)
        self._sock.close()


def test_background_child_failure_is_reported_with_its_message_and_code(
    e2e: E2E, shared_sshd: SSHD
) -> None:
    """The service goes away between the foreground's check and the child's: child's exit 7."""
    service = OneShotService()
    try:
        out = e2e.run(*bg_share_argv(service.port, "1m", "--json", via=shared_sshd), timeout=60)
    finally:
        service.close()
    assert out.returncode == 7, (out.stdout, out.stderr)
    assert out.stdout == ""
    assert f"Error: nothing is listening on 127.0.0.1:{service.port}" in out.stderr
    logs = list((e2e.sandbox.state_dir / "logs").iterdir())
    assert len(logs) == 1
    assert f"(log: {logs[0]})" in out.stderr  # the hint says where the child's output is
    assert "nothing is listening" in logs[0].read_text()
    _assert_nothing_left(e2e)


def test_background_unknown_host_key_is_refused_non_interactively(
    e2e: E2E, shared_sshd: SSHD
) -> None:
    args = bg_share_argv(e2e.service().port, "1m", "--json", via=shared_sshd)
    at = args.index("--known-hosts")
    del args[at : at + 2]
    out = e2e.run(*args, timeout=60)
    assert out.returncode == 4, (out.stdout, out.stderr)
    assert out.stdout == ""
    assert "is not known" in out.stderr and "SHA256:" in out.stderr
    assert "safetunnel hosts trust" in out.stderr
    _assert_nothing_left(e2e)
    assert not (e2e.sandbox.state_dir / "logs").exists(), "no child should have been started"
    assert not (e2e.sandbox.config_dir / "known_hosts").exists(), "the key was trusted anyway"


class RecordReader:
    """Reads every record file as fast as it can on a thread; collects any that do not parse.

    `list` reads a record a few times a second; this reader makes a torn write (a reader seeing
    a half-written file) likely to be caught instead of merely possible.
    """

    def __init__(self, tunnels: Path) -> None:
        self.tunnels = tunnels
        self.reads = 0
        self.torn: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-record-reader")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for path in self.tunnels.glob("st-*.json") if self.tunnels.is_dir() else []:
                try:
                    data = path.read_bytes()
                except FileNotFoundError:
                    continue
                self.reads += 1
                try:
                    json.loads(data)
                except ValueError:
                    self.torn.append(data.decode(errors="replace"))
            time.sleep(0.001)  # leave the CPU to the shares it is racing

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.mark.slow
def test_parallel_shares_and_list_loop_never_see_a_torn_record(e2e: E2E) -> None:
    """Ten background shares (built-in gateway) start while `list --json` runs in a loop."""
    service = e2e.service()
    count, rounds = 10, 30
    reader = RecordReader(e2e.sandbox.state_dir / "tunnels")
    try:
        results = _start_while_listing(e2e, service.port, count, rounds)
    finally:
        reader.stop()
    assert reader.torn == [], f"{len(reader.torn)} torn reads, e.g. {reader.torn[0]!r}"
    assert reader.reads > 100  # the reader really raced the writers
    for out in results:
        assert out.returncode == 0, (out.stdout, out.stderr)
    events = [e2e.started_from(out) for out in results]
    ids = {e["id"] for e in events}
    assert len(ids) == count
    assert {r["id"] for r in e2e.list_json()} == ids

    killed = e2e.cli_ok("kill", "--all")
    assert sorted(killed.stdout.splitlines()) == sorted(f"{i}: stopped" for i in ids)
    assert e2e.list_json() == []
    assert not any(pid_running(e["pid"]) for e in events)
    assert list(Path(e2e.sandbox.state_dir / "tunnels").iterdir()) == []
    e2e.assert_no_token_on_disk()


def _start_while_listing(
    e2e: E2E, port: int, count: int, rounds: int
) -> list[subprocess.CompletedProcess[str]]:
    """Start ``count`` shares at once; run `list --json` ``rounds`` times or until all are up."""
    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [
            pool.submit(e2e.run, *bg_share_argv(port, "2m", "--json", via=None), timeout=90)
            for _ in range(count)
        ]
        seen_counts: list[int] = []
        deadline = time.monotonic() + 90
        while (
            len(seen_counts) < rounds or not all(f.done() for f in futures)
        ) and time.monotonic() < deadline:
            listing = e2e.cli("list", "--json")
            assert listing.returncode == 0, listing.stderr
            # A torn record would be unparsable, and list prunes what it cannot parse.
            assert "Cleaned" not in listing.stderr, listing.stderr
            records = json.loads(listing.stdout)
            for record in records:
                assert set(LIST_KEYS) <= set(record), record
                assert isinstance(record["pid"], int) and record["remote_port"] > 0
            seen_counts.append(len(records))
        assert len(seen_counts) >= rounds and max(seen_counts) <= count
        return [f.result() for f in futures]
