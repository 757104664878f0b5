"""A tunnel's events reach its observers in the order they were raised, and the relay loop's
events in batches: one flush (one write of stdout, one append to the audit log) per wake-up."""

from __future__ import annotations

import io
import sys
import threading
import time
from collections.abc import Callable

import pytest

from safetunnel.cli.console import ConsoleUI
from safetunnel.sharing import events
from safetunnel.sharing import reports as reports_module
from safetunnel.sharing.events import TunnelEvent
from safetunnel.sharing.relayloop import RelayLoop
from safetunnel.sharing.reports import Reports


class Recorder:
    """An observer that notes each event's origin and each flush."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.lock = threading.Lock()

    def event(self, event: TunnelEvent) -> None:
        with self.lock:
            self.seen.append(getattr(event, "origin", event.kind))

    def flush(self) -> None:
        with self.lock:
            self.seen.append("flush")


def conn(origin: str) -> events.Connection:
    return events.Connection("st-1a2b3c", origin, "tcp", True)


class Emitter:
    """A loop client whose first step raises ``count`` events, as a burst of connections does."""

    def __init__(self, reports: Reports, names: list[str]) -> None:
        self.reports = reports
        self.names = names

    def begin(self) -> None:
        for name in self.names:
            self.reports.emit(conn(name))

    def on_ready(self, fd: int, events: int) -> None:
        raise AssertionError("watches nothing")

    def on_timer(self) -> None:
        """Told to finish at close: nothing to finish."""


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_events_raised_on_the_loop_are_delivered_together_soon_after() -> None:
    recorder = Recorder()
    reports = Reports(recorder)
    loop = RelayLoop("test-reports", time.monotonic, reports)
    reports.defer_on(loop.on_loop)
    try:
        loop.add(Emitter(reports, ["a", "b", "c"]))
        wait_for(lambda: "flush" in recorder.seen)
        assert recorder.seen == ["a", "b", "c", "flush"]
    finally:
        loop.close()


def test_an_event_from_another_thread_comes_after_what_the_loop_queued_before_it() -> None:
    recorder = Recorder()
    reports = Reports(recorder)
    on_loop = threading.Event()
    reports.defer_on(on_loop.is_set)  # this thread plays the loop while the flag is set
    on_loop.set()
    reports.emit(conn("queued-1"))
    reports.emit(conn("queued-2"))
    assert recorder.seen == []  # queued, not delivered: not due yet
    assert reports.run_due() is not None
    on_loop.clear()
    reports.emit(events.Warning("st-1a2b3c", "mind the gap"))
    assert recorder.seen == ["queued-1", "queued-2", "warning", "flush"]
    reports.flush()  # nothing left: no empty flush
    assert recorder.seen.count("flush") == 1


def test_the_loop_delivers_what_is_left_when_it_stops() -> None:
    recorder = Recorder()
    reports = Reports(recorder)
    loop = RelayLoop("test-reports", time.monotonic, reports)
    reports.defer_on(loop.on_loop)

    class LastWords(Emitter):
        def on_timer(self) -> None:  # the loop tells its clients to finish as it closes
            self.reports.emit(conn("last"))

    loop.add(LastWords(reports, ["first"]))
    wait_for(lambda: "first" in recorder.seen)
    loop.close()
    assert recorder.seen[-2:] == ["last", "flush"]


def test_the_console_writes_a_batch_of_json_lines_at_its_flush(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    writes: list[str] = []

    class Stdout(io.StringIO):
        def write(self, text: str) -> int:
            writes.append(text)
            return len(text)

    monkeypatch.setattr(sys, "stdout", Stdout())
    ui = ConsoleUI(as_json=True)
    for origin in ("1.2.3.4:5", "6.7.8.9:10"):
        ui.event(conn(origin))
    assert writes == []
    ui.flush()
    assert len(writes) == 1
    lines = writes[0].splitlines()
    assert [line.count('"origin"') for line in lines] == [1, 1]
    assert "1.2.3.4:5" in lines[0] and "6.7.8.9:10" in lines[1]


def test_traffic_raised_off_the_loop_goes_out_in_batches_by_the_flusher(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Time for three threads to start on a busy machine; at 10 ms they sometimes did not.
    monkeypatch.setattr(reports_module, "DELAY", 1.0)
    recorder = Recorder()
    reports = Reports(recorder)
    try:
        emitters = [
            threading.Thread(target=reports.emit, args=(conn(f"worker-{i}"),)) for i in range(3)
        ]
        for emitter in emitters:
            emitter.start()
        for emitter in emitters:
            emitter.join()
        assert recorder.seen == []  # they wait for the flusher
        wait_for(lambda: "flush" in recorder.seen)
        assert sorted(recorder.seen[:3]) == ["worker-0", "worker-1", "worker-2"]
        assert recorder.seen[3:] == ["flush"]  # the three together, one flush
    finally:
        reports.close()


def test_a_warning_goes_out_at_once_after_the_traffic_before_it() -> None:
    recorder = Recorder()
    reports = Reports(recorder)
    reports.emit(conn("first"))
    reports.emit(events.Warning("st-1a2b3c", "mind the gap"))
    assert recorder.seen[:3] == ["first", "warning", "flush"]
    reports.close()


def flushers() -> int:
    return sum(t.name == "safetunnel-reports" and t.is_alive() for t in threading.enumerate())


def test_close_delivers_what_waits_and_after_it_nothing_waits() -> None:
    before = flushers()
    recorder = Recorder()
    reports = Reports(recorder)
    reports.emit(conn("queued"))
    reports.close()
    assert recorder.seen == ["queued", "flush"]
    reports.emit(conn("late"))
    assert recorder.seen[-2:] == ["late", "flush"]
    assert flushers() <= before  # its flusher thread is gone
