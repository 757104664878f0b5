from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import click
import pytest
from click.testing import CliRunner

from safetunnel.cli import render
from safetunnel.cli.params import DURATION
from safetunnel.registry.records import TunnelRecord

NOW = datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)


@click.command()
@click.option("--by", type=DURATION, required=True)
def probe(by: int) -> None:
    click.echo(repr(by))


def test_duration_param_converts_and_bad_values_are_usage_errors() -> None:
    runner = CliRunner()
    assert runner.invoke(probe, ["--by", "1h30m"]).output == "5400\n"
    for bad in ("30", "0m", "-5m", "5x", ""):
        result = runner.invoke(probe, ["--by", bad])
        assert result.exit_code == 2, bad
        assert "Invalid value for '--by'" in result.output


def test_duration_param_passes_int_defaults_through() -> None:
    assert DURATION.convert(600, None, None) == 600


def record() -> TunnelRecord:
    return TunnelRecord(
        id="st-1a2b3c",
        pid=4242,
        pid_start_time=1.0,
        local="127.0.0.1:62893",
        ssh_host="alice@bastion:22",
        remote_bind="localhost",
        remote_port=40123,
        protocol="auto",
        started_at="2026-01-01T00:00:00Z",
        expires_at="2026-01-01T00:29:58Z",
        token_hash_prefix="0badc0de",
        connections=1,
        total_connections=7,
    )


def test_list_table() -> None:
    assert render.list_table([record()], NOW).splitlines() == [
        "ID         LOCAL            VIA               REMOTE           STATE    EXPIRES IN  CONNS"
        "  PID",
        "st-1a2b3c  127.0.0.1:62893  alice@bastion:22  localhost:40123  serving  29m 58s     1/7"
        "    4242",
    ]


def test_list_and_status_show_a_reconnecting_tunnel() -> None:
    again = dataclasses.replace(record(), state="reconnecting")
    assert render.list_table([again], NOW).splitlines()[1].split()[4] == "reconnecting"
    assert render.list_json([again]).count('"state": "reconnecting"') == 1
    status = render.status_text({**again.to_dict(), "recent": []}, NOW)
    assert "State:" in status and "reconnecting" in status


def test_a_record_written_before_the_state_field_reads_as_serving() -> None:
    old = record().to_dict()
    del old["state"]
    assert TunnelRecord.from_dict(old).state == "serving"
    assert "State:       serving" in render.status_text({**old, "recent": []}, NOW)


def test_list_and_status_bracket_ipv6_addresses() -> None:
    v6 = dataclasses.replace(record(), local="[::1]:62893", remote_bind="::1")
    row = render.list_table([v6], NOW).splitlines()[1].split()
    assert row[1:4] == ["[::1]:62893", "alice@bastion:22", "[::1]:40123"]
    status = render.status_text({**v6.to_dict(), "recent": []}, NOW)
    assert "[::1]:40123" in status


@pytest.mark.parametrize(
    ("stamp", "text"),
    [("2026-01-01T04:59:00Z", "4h 59m"), ("2025-12-31T23:59:00Z", "expired"), ("garbage", "?")],
)
def test_remaining(stamp: str, text: str) -> None:
    assert render.remaining(stamp, NOW) == text


def test_status_text_shows_counters_and_recent() -> None:
    info = {
        **record().to_dict(),
        "live": False,
        "live_error": "no answer",
        "recent": [
            {
                "origin": "127.0.0.1:5000",
                "protocol": "http",
                "allowed": False,
                "reason": "bad-token",
                "bytes_in": 2048,
                "bytes_out": 0,
                "duration": 0.25,
            }
        ],
    }
    text = render.status_text(info, NOW)
    assert "1 open, 7 total, 0 denied" in text
    assert "unavailable (no answer)" in text
    assert "denied  bad-token" in text and "2.0 KiB" in text and "0.2s" in text


def test_log_line_and_header_align() -> None:
    line = render.log_line(
        {"ts": "2026-01-01T00:00:00Z", "id": "st-1a2b3c", "event": "stopped", "reason": "ttl"}
    )
    header = render.log_header()
    assert header.index("EVENT") == line.index("stopped")
    assert line.endswith("reason=ttl")
