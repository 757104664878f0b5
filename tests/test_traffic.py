"""A tunnel's traffic reports: each gate RequestDone becomes a request event and a status entry;
the service's state is told on change only, from the connections' own outcomes."""

from __future__ import annotations

import pytest

from safetunnel.cli.console import event_text
from safetunnel.cli.render import closed_line, request_line, status_text
from safetunnel.gate.events import RequestDone
from safetunnel.sharing import events
from safetunnel.sharing.stats import RECENT_REQUESTS, ConnCounters, TunnelStats
from safetunnel.sharing.traffic import SERVICE_DOWN, SERVICE_UP, UNAVAILABLE, TrafficReports
from safetunnel.timefmt import utc_now

CONN = ConnCounters("127.0.0.1:5000")


def conn(protocol: str, opened: float) -> ConnCounters:
    """A connection of ``protocol`` opened at ``opened`` on its clock."""
    return ConnCounters("127.0.0.1:5000", clock=lambda: opened, protocol=protocol)


def done(status: int = 200, path: str = "/x", reached: bool = True) -> RequestDone:
    return RequestDone("GET", path, status, 1.0, 1.0123456, 40, 90, reached_service=reached)


@pytest.fixture
def seen() -> list[events.TunnelEvent]:
    return []


@pytest.fixture
def reports(seen: list[events.TunnelEvent]) -> TrafficReports:
    return TrafficReports("st-1a2b3c", "127.0.0.1:8080", TunnelStats(), seen.append)


def warnings(seen: list[events.TunnelEvent]) -> list[str | None]:
    return [e.code for e in seen if isinstance(e, events.Warning)]


def test_a_report_becomes_one_request_event_with_a_rounded_duration(
    reports: TrafficReports, seen: list[events.TunnelEvent]
) -> None:
    reports.request(CONN, done())
    assert seen == [events.Request("st-1a2b3c", "GET", "/x", 200, 0.012, 40, 90)]


def test_status_keeps_the_last_requests_only() -> None:
    stats = TunnelStats()
    reports = TrafficReports("st-1a2b3c", "127.0.0.1:8080", stats, lambda _e: None)
    for number in range(RECENT_REQUESTS + 5):
        reports.request(CONN, done(path=f"/{number}"))
    kept = stats.snapshot()["requests"]
    assert [r["path"] for r in kept] == [f"/{n}" for n in range(5, RECENT_REQUESTS + 5)]
    assert set(kept[0]) == {"method", "path", "status", "duration", "bytes_in", "bytes_out"}


def test_the_service_going_down_and_back_is_told_once_each(
    reports: TrafficReports, seen: list[events.TunnelEvent]
) -> None:
    reports.request(CONN, done())  # up from the start: nothing to tell
    for _ in range(3):
        reports.request(CONN, done(502, reached=False))
        reports.finished(conn("http", 1.0), True, UNAVAILABLE)
    assert warnings(seen) == [SERVICE_DOWN]
    reports.request(CONN, done(303, reached=False))  # a link's answer says nothing either way
    assert warnings(seen) == [SERVICE_DOWN]
    for _ in range(3):
        reports.request(CONN, done())
    reports.finished(conn("http", 2.0), True, "done")
    assert warnings(seen) == [SERVICE_DOWN, SERVICE_UP]


def test_raw_tcp_tells_the_service_state_from_its_connections(
    reports: TrafficReports, seen: list[events.TunnelEvent]
) -> None:
    reports.finished(conn("tcp", 1.0), True, UNAVAILABLE)
    reports.finished(conn("tcp", 2.0), False, "unauthorized")  # says nothing of the service
    reports.finished(conn("tcp", 3.0), True, "eof")
    assert warnings(seen) == [SERVICE_DOWN, SERVICE_UP]
    down = next(e for e in seen if isinstance(e, events.Warning))
    assert "127.0.0.1:8080" in down.message and "disconnected" in down.message


def test_a_stream_opened_before_the_service_went_down_does_not_say_it_is_back(
    reports: TrafficReports, seen: list[events.TunnelEvent]
) -> None:
    """A long raw TCP connection reached the service before it stopped; its end, after a newer
    connection found the service gone, says nothing about the service now."""
    old = conn("tcp", 1.0)
    reports.finished(conn("tcp", 2.0), True, UNAVAILABLE)
    reports.finished(old, True, "eof")
    assert warnings(seen) == [SERVICE_DOWN]
    reports.finished(conn("tcp", 3.0), True, "eof")
    assert warnings(seen) == [SERVICE_DOWN, SERVICE_UP]


def test_the_live_view_says_down_as_a_warning_and_back_as_a_note() -> None:
    down = events.Warning("st-1a2b3c", "cannot reach its local service x", SERVICE_DOWN)
    up = events.Warning("st-1a2b3c", "reaches its local service x again", SERVICE_UP)
    assert event_text(down, None) == "Warning: tunnel st-1a2b3c cannot reach its local service x."
    assert event_text(up, None) == "Tunnel st-1a2b3c reaches its local service x again."


def test_live_lines_for_a_request_and_a_tcp_connection() -> None:
    request = events.Request("st-1a2b3c", "GET", "/x", 200, 0.0124, 40, 2048)
    assert event_text(request, None) == "  GET /x 200 · 12 ms · in 40 B · out 2.0 KiB"
    closed = events.ConnectionClosed("st-1a2b3c", "1.2.3.4:5", "tcp", True, "eof", 7, 9, 75.0)
    assert event_text(closed, None) == "  1.2.3.4:5 tcp: closed after 1m 15s · in 7 B · out 9 B"
    http_closed = events.ConnectionClosed("st-1a2b3c", "1.2.3.4:5", "http", True, "done", 1, 1, 1.0)
    assert event_text(http_closed, None) is None  # its requests were shown one by one


def test_render_never_passes_control_characters_from_a_record() -> None:
    line = request_line({"method": "GET\x1b[2J", "path": "/a b\x07", "status": 200})
    assert "\x1b" not in line and "\x07" not in line and "GET?[2J /a?b?" in line
    assert "\x1b" not in closed_line({"origin": "x", "protocol": "tcp", "duration": 2.5})


def test_status_text_lists_recent_requests_after_the_connections() -> None:
    status = {"id": "st-1a2b3c", "expires_at": "2030-01-01T00:00:00Z", "recent": []}
    assert "Recent requests:" not in status_text(status, utc_now())
    status["requests"] = [{"method": "POST", "path": "/f", "status": 201, "duration": 1.5}]
    text = status_text(status, utc_now())
    assert text.index("Recent connections:") < text.index("Recent requests:")
    assert "POST    /f    201     1.5 s" in text
