from __future__ import annotations

import json
import stat
import threading
from pathlib import Path

import pytest

from safetunnel import tokens
from safetunnel.errors import StateError
from safetunnel.registry.audit import REDACTED, AuditLog, is_secret_name, scrub


def test_write_creates_0600_file_in_0700_dir_with_utc_ts(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "state" / "audit.jsonl")
    entry = log.write("started", "st-1a2b3c", local="127.0.0.1:62893")
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.path.parent.stat().st_mode) == 0o700
    assert entry["ts"].endswith("Z")
    line = json.loads(log.path.read_text())
    assert line == entry
    assert list(line)[:3] == ["ts", "event", "id"]


def test_refuses_group_writable_dir(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(StateError):
        AuditLog(shared / "audit.jsonl").write("started", "st-1a2b3c")


def test_append_only_and_read_filters_by_id(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    log.write("started", "st-aaaaaa")
    log.write("started", "st-bbbbbb")
    log.write("stopped", "st-aaaaaa", reason="ttl")
    with log.path.open("a") as handle:
        handle.write("garbage that is not json\n")
    assert [e["event"] for e in log.read()] == ["started", "started", "stopped"]
    assert [e["event"] for e in log.read("st-aaaaaa")] == ["started", "stopped"]
    assert list(AuditLog(tmp_path / "missing.jsonl").read()) == []


def test_secret_fields_dropped_and_token_values_redacted(tmp_path: Path) -> None:
    token = tokens.generate()
    log = AuditLog(tmp_path / "audit.jsonl")
    log.write(
        "started",
        "st-1a2b3c",
        token=token,
        password="hunter2",
        ssh_passphrase="pp",
        url=f"http://localhost:1/?safetunnel_token={token}",
        nested={"access_token": token, "note": [token]},
        token_hash_prefix="0badc0de",
        path=Path(f"/tmp/{token}"),
    )
    text = log.path.read_text()
    assert token not in text and "hunter2" not in text and '"pp"' not in text
    entry = json.loads(text)
    assert entry["url"] == f"http://localhost:1/?safetunnel_token={REDACTED}"
    assert entry["nested"] == {"note": [REDACTED]}
    assert entry["token_hash_prefix"] == "0badc0de"
    assert entry["path"] == f"/tmp/{REDACTED}"


def test_reserved_keys_cannot_be_overridden(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    entry = log.write("warning", "st-1a2b3c", ts="fake", event="fake", message="expires in 5m")
    assert entry["event"] == "warning" and entry["ts"] != "fake"


@pytest.mark.parametrize(
    "name",
    ["token", "Token", "access_token", "password", "ssh_password", "passphrase", "client_secret"],
)
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


def test_non_secret_names_and_plain_values_kept() -> None:
    assert not is_secret_name("token_hash_prefix")
    assert scrub({"allowed": False, "bytes_in": 3, "d": 0.5, "n": None}) == {
        "allowed": False,
        "bytes_in": 3,
        "d": 0.5,
        "n": None,
    }


def test_bad_event_name_is_a_bug(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bad audit event"):
        AuditLog(tmp_path / "audit.jsonl").write("Started\n{", "st-1a2b3c")


def test_follow_waits_for_the_file_and_sees_appends(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    seen: list[str] = []
    done = threading.Event()
    ticks = 0

    def fake_sleep(_: float) -> None:
        nonlocal ticks
        ticks += 1
        if ticks == 2:
            log.write("started", "st-aaaaaa")
        if ticks == 3:
            # A line arriving in two writes must come out once, whole.
            with log.path.open("a") as handle:
                handle.write('{"ts": "x", "event": "conn')
        if ticks == 4:
            with log.path.open("a") as handle:
                handle.write('ection", "id": "st-aaaaaa"}\n')
            log.write("started", "st-bbbbbb")
        if ticks == 6:
            done.set()

    for entry in log.follow("st-aaaaaa", poll=0, stop=done.is_set, sleep=fake_sleep):
        seen.append(entry["event"])
    assert seen == ["started", "connection"]


def test_follow_reopens_a_replaced_file(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    log.write("started", "st-aaaaaa")
    seen: list[str] = []
    ticks = 0

    def fake_sleep(_: float) -> None:
        nonlocal ticks
        ticks += 1
        if ticks == 1:
            log.path.rename(tmp_path / "audit.jsonl.1")
            log.write("stopped", "st-aaaaaa")

    for entry in log.follow(poll=0, stop=lambda: ticks >= 3, sleep=fake_sleep):
        seen.append(entry["event"])
    assert seen == ["started", "stopped"]


def test_an_entry_from_a_mapping_leaves_out_what_it_is_told_and_still_scrubs() -> None:
    token = tokens.generate()
    fields = {
        "event": "connection-closed",
        "id": "st-other",
        "ts": "fake",
        "url": "https://example.invalid/",
        "reason": f"bad {token}",
        "origin": "127.0.0.1:0",
        "bytes_in": 3,
        "access_token": token,
    }
    entry = AuditLog.entry_of("connection", "st-1a2b3c", fields, frozenset({"url"}))
    assert entry["event"] == "connection" and entry["id"] == "st-1a2b3c"
    assert entry["ts"] != "fake"
    assert list(entry)[3:] == ["reason", "origin", "bytes_in"]
    assert entry["reason"] == f"bad {REDACTED}" and entry["bytes_in"] == 3
    assert fields["access_token"] == token, "the caller's mapping is left as it was"
