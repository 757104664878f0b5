"""Pump start-up and parking: no pool thread waits on a connection that has sent nothing.

The pump registers on paramiko's channel input buffer (``BufferedPipe.set_event``) and is
submitted on the first data, EOF or close; after Connect the connecting thread reads the service
and the remote side is parked until its next input. These tests drive a real Pump with a real
paramiko BufferedPipe as the channel input and a real loopback service.
"""

from __future__ import annotations

import gc
import time
import weakref

from pumpkit import TOKEN, Harness, reqrep

__all__ = ["reqrep"]  # the fixture, used by name


def test_no_thread_until_input_then_a_full_exchange(reqrep: tuple[str, int]) -> None:
    h = Harness(reqrep)
    try:
        h.pump.start(h.pump.run)
        time.sleep(0.1)
        assert h.submitted == 0  # nothing sent yet: no pool thread is spent on it
        h.chan.in_buffer.feed(f"SAFETUNNEL {TOKEN}\nping\n".encode())
        assert h.chan.eof_sent.wait(5)  # reply relayed and the service's EOF passed on
        assert bytes(h.chan.sent) == b"ok ping\n"
        assert h.decisions == [(True, "allowed")]
        assert not h.finished.is_set()  # the remote side is parked, not finished
        h.chan.in_buffer.close()  # remote EOF resumes it
        assert h.finished.wait(5)
        assert h.result is not None and h.result[0] is True
        assert h.submitted == 2  # first input, then the parked remote side's EOF
    finally:
        h.close()


def test_silent_client_is_timed_out_once_overdue(reqrep: tuple[str, int]) -> None:
    h = Harness(reqrep, header_timeout=0.2)
    try:
        h.pump.start(h.pump.run)
        assert not h.pump.overdue(time.monotonic())
        time.sleep(0.3)
        assert h.pump.overdue(time.monotonic())
        h.pump.kick()  # what the tunnel's supervisor tick does
        assert h.finished.wait(5)
        assert h.result == (False, "timeout")
        assert h.decisions == [(False, "timeout")]
        assert h.chan.closed
    finally:
        h.close()


def test_bad_token_never_reaches_the_service(reqrep: tuple[str, int]) -> None:
    h = Harness(reqrep)
    try:
        h.pump.start(h.pump.run)
        h.chan.in_buffer.feed(b"SAFETUNNEL st_" + b"x" * 43 + b"\nping\n")
        assert h.finished.wait(5)
        assert h.result == (False, "unauthorized")
        assert bytes(h.chan.sent) == b""
    finally:
        h.close()


def test_a_finished_pump_is_freed_by_reference_counting(reqrep: tuple[str, int]) -> None:
    """Nothing of a finished connection waits for the cyclic garbage collector: a cycle through
    the pump made every connection's objects (channel buffers, gate, locks) garbage that only a
    collection frees, and those collections grew with the connection rate."""
    h = Harness(reqrep)
    gc.disable()
    try:
        h.pump.start(h.pump.run)
        h.chan.in_buffer.feed(f"SAFETUNNEL {TOKEN}\nping\n".encode())
        assert h.chan.eof_sent.wait(5)
        h.chan.in_buffer.close()
        assert h.finished.wait(5)
        h.pool.shutdown(wait=True)  # the pool's threads no longer hold the pump's runner
        pump = weakref.ref(h.pump)
        del h.pump
        assert pump() is None
    finally:
        gc.enable()
        h.pool.shutdown(wait=True)
