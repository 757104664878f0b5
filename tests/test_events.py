"""Tunnel events: to_json() gives exactly the dicts that `share --json` prints and the audit keeps
(key order included), parse() reads them back, and the started link points at the SSH host."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safetunnel.registry.audit import AuditLog
from safetunnel.registry.publication import Bookkeeper
from safetunnel.registry.records import Registry
from safetunnel.sharing import events
from safetunnel.sharing.reasons import StopReason
from safetunnel.sharing.tunnelconfig import TunnelConfig

STARTED = events.Started(
    id="st-1a2b3c",
    pid=4242,
    local="127.0.0.1:62893",
    ssh_host="alice@bastion:22",
    remote_bind="127.0.0.1",
    remote_port=40123,
    protocol="auto",
    token="st_x",
    started_at="2026-01-01T00:00:00Z",
    expires_at="2026-01-01T00:30:00Z",
    url="http://127.0.0.1:40123/?safetunnel_token=st_x",
)
CLOSED = events.ConnectionClosed(
    id="st-1a2b3c",
    origin="127.0.0.1:5000",
    protocol="http",
    allowed=False,
    reason="bad-token",
    bytes_in=10,
    bytes_out=0,
    duration=0.1,
)
LINES = [
    (
        STARTED,
        '{"event":"started","id":"st-1a2b3c","pid":4242,"local":"127.0.0.1:62893",'
        '"ssh_host":"alice@bastion:22","remote_bind":"127.0.0.1","remote_port":40123,'
        '"protocol":"auto","token":"st_x","started_at":"2026-01-01T00:00:00Z",'
        '"expires_at":"2026-01-01T00:30:00Z",'
        '"url":"http://127.0.0.1:40123/?safetunnel_token=st_x"}',
    ),
    (
        events.Connection("st-1a2b3c", "127.0.0.1:5000", "http", True),
        '{"event":"connection","id":"st-1a2b3c","origin":"127.0.0.1:5000","protocol":"http",'
        '"allowed":true}',
    ),
    (
        events.Connection("st-1a2b3c", "127.0.0.1:5000", "unknown", False, "max-connections"),
        '{"event":"connection","id":"st-1a2b3c","origin":"127.0.0.1:5000","protocol":"unknown",'
        '"allowed":false,"reason":"max-connections"}',
    ),
    (
        CLOSED,
        '{"event":"connection-closed","id":"st-1a2b3c","origin":"127.0.0.1:5000",'
        '"protocol":"http","allowed":false,"reason":"bad-token","bytes_in":10,"bytes_out":0,'
        '"duration":0.1}',
    ),
    (
        events.Warning("st-1a2b3c", "expires in 5m"),
        '{"event":"warning","id":"st-1a2b3c","message":"expires in 5m"}',
    ),
    (
        events.Request("st-1a2b3c", "GET", "/a/b", 404, 0.012, 80, 120),
        '{"event":"request","id":"st-1a2b3c","method":"GET","path":"/a/b","status":404,'
        '"duration":0.012,"bytes_in":80,"bytes_out":120}',
    ),
    (
        events.Warning("st-1a2b3c", "cannot reach its local service", "service-down"),
        '{"event":"warning","id":"st-1a2b3c","message":"cannot reach its local service",'
        '"code":"service-down"}',
    ),
    (
        events.Stopped("st-1a2b3c", StopReason.SSH_LOST, "2026-01-01T00:10:00Z"),
        '{"event":"stopped","id":"st-1a2b3c","reason":"ssh-lost","ended_at":"2026-01-01T00:10:00Z"}',
    ),
]


@pytest.mark.parametrize(("event", "line"), LINES)
def test_json_lines_are_byte_for_byte_the_published_ones(
    event: events.TunnelEvent, line: str
) -> None:
    assert json.dumps(event.to_json(), separators=(",", ":")) == line


def test_a_started_event_without_token_has_no_token_key() -> None:
    data = events.Started(**{**STARTED.__dict__, "token": None}).to_json()
    assert "token" not in data and list(data)[-3:] == ["started_at", "expires_at", "url"]


def test_the_audit_keeps_what_it_kept_and_never_the_token(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    books = Bookkeeper(Registry(tmp_path / "state"), audit)
    for event, _ in LINES:
        books.event(event)
    assert list(audit.read()) == []  # the observer protocol's flush() writes a batch at once
    books.flush()
    entries = [{k: v for k, v in e.items() if k != "ts"} for e in audit.read()]
    kinds = ["started", "connection", "warning", "request", "warning", "stopped"]
    assert [e["event"] for e in entries] == kinds
    assert entries[0] == {
        "event": "started",
        "id": "st-1a2b3c",
        "pid": 4242,
        "local": "127.0.0.1:62893",
        "ssh_host": "alice@bastion:22",
        "remote_bind": "127.0.0.1",
        "remote_port": 40123,
        "protocol": "auto",
        "started_at": "2026-01-01T00:00:00Z",
        "expires_at": "2026-01-01T00:30:00Z",
    }
    assert entries[1] == {**CLOSED.to_json(), "event": "connection"}  # no recipient: none shown
    assert entries[3] == {
        "event": "request",
        "id": "st-1a2b3c",
        **{"method": "GET", "path": "/a/b", "status": 404, "duration": 0.012},
        **{"bytes_in": 80, "bytes_out": 120},
    }
    assert entries[4]["code"] == "service-down"
    assert "st_x" not in (tmp_path / "audit.jsonl").read_text()


@pytest.mark.parametrize(
    ("public_host", "host_in_url"),
    [("bastion.example.org", "bastion.example.org"), ("2001:db8::7", "[2001:db8::7]")],
)
def test_a_public_link_names_the_ssh_host_given_not_one_parsed_from_a_label(
    public_host: str, host_in_url: str
) -> None:
    # The display name is for people and may be anything; the link must not be cut out of it.
    config = TunnelConfig(
        local=("127.0.0.1", 80),
        ttl=60,
        ssh_host="prod gateway (alice@bastion)",
        public=True,
        public_host=public_host,
    )
    assert config.url_host == public_host
    assert config.link(40123, None) == f"http://{host_in_url}:40123/"
    assert config.link(40123, "st_x") == f"http://{host_in_url}:40123/?safetunnel_token=st_x"
    private = TunnelConfig(local=("127.0.0.1", 80), ttl=60, ssh_host="x", public_host="h")
    assert private.link(1, None) == "http://127.0.0.1:1/"


class CountingAudit(AuditLog):
    """The real audit log, counting how often its writability is checked."""

    checks = 0

    def check_writable(self) -> None:
        self.checks += 1
        super().check_writable()


def test_the_audit_file_is_checked_once_per_batch_of_reports(tmp_path: Path) -> None:
    audit = CountingAudit(tmp_path / "audit.jsonl")
    books = Bookkeeper(Registry(tmp_path / "state"), audit)
    assert books._audit_ready() and books._audit_ready()  # two admissions in one wake-up
    assert audit.checks == 1
    books.event(CLOSED)
    books.flush()  # the batch's lines are written: the next batch is checked anew
    assert books._audit_ready()
    assert audit.checks == 2
