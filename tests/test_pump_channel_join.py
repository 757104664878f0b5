"""A paramiko channel's pump joins the relay loop at its first input, not at its open (a round
trip earlier), and a client that sends nothing is still timed out: the tunnel's overdue check
kicks it onto the loop. A real ``paramiko.Channel`` (no transport) and a real relay loop."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import paramiko
import pytest
from pumpkit import TOKEN

from safetunnel import tokens
from safetunnel.gate.policy import GatePolicy
from safetunnel.sharing.pump import Pump
from safetunnel.sharing.pumprelay import RelayPump, make_pump
from safetunnel.sharing.pumptypes import PumpHooks
from safetunnel.sharing.relayloop import RelayLoop
from safetunnel.sharing.stats import ConnCounters
from safetunnel.ssh.channelstream import ChannelStream

LOOP = "test-join-loop"


class Joined:
    """One channel pump on its own loop, and what it reported (and on which thread)."""

    def __init__(self, header_timeout: float = 10.0) -> None:
        self.loop = RelayLoop(LOOP, time.monotonic)
        self.channel = paramiko.Channel(5)
        self.finished = threading.Event()
        self.result: tuple[bool, str, str] | None = None
        policy = GatePolicy(
            token_hash=tokens.hash_token(TOKEN),
            tunnel_id="st-test",
            protocol="tcp",
            header_timeout=header_timeout,
        )
        hooks = PumpHooks(
            policy=policy,
            service=("127.0.0.1", 9),
            submit=self._no_threads,
            on_decision=lambda _c, _a, _r: None,
            on_finished=self._finished,
            relay=self.loop,
        )
        self.pump: Pump = make_pump(
            ChannelStream(self.channel, ("127.0.0.1", 1)), ConnCounters(origin="x"), hooks
        )
        assert isinstance(self.pump, RelayPump)

    def _no_threads(self, call: object) -> object:
        raise AssertionError("a channel on the relay loop asked for a pool thread")

    def _finished(self, _c: ConnCounters, allowed: bool, reason: str) -> None:
        self.result = (allowed, reason, threading.current_thread().name)
        self.finished.set()


@pytest.fixture
def joined() -> Iterator[list[Joined]]:
    made: list[Joined] = []
    yield made
    for one in made:
        one.pump.close()
        one.loop.close()


def test_a_channel_joins_the_loop_at_its_first_input(joined: list[Joined]) -> None:
    one = Joined()
    joined.append(one)
    one.pump.start(one.pump.run)
    assert not [t for t in threading.enumerate() if t.name == LOOP]  # nothing to move yet
    one.channel.in_buffer.feed(b"SAFETUNNEL st_" + b"x" * 43 + b"\n")  # a wrong token
    assert one.finished.wait(5)
    assert one.result == (False, "unauthorized", LOOP)


def test_a_silent_channel_is_timed_out_once_overdue(joined: list[Joined]) -> None:
    one = Joined(header_timeout=0.2)
    joined.append(one)
    one.pump.start(one.pump.run)
    assert not one.pump.overdue(time.monotonic())
    time.sleep(0.3)
    assert one.pump.overdue(time.monotonic())
    one.pump.kick()  # what the tunnel's supervisor tick does
    assert one.finished.wait(5)
    assert one.result == (False, "timeout", LOOP)


def test_a_first_input_after_the_loop_closed_finishes_off_the_callers_thread(
    joined: list[Joined],
) -> None:
    """The first input arrives on paramiko's transport thread, inside its buffer's lock: a pump
    finishing there would close the channel, which takes that lock again."""
    one = Joined()
    joined.append(one)
    one.pump.start(one.pump.run)
    one.loop.close()
    one.channel.in_buffer.feed(b"late")  # on this thread, as the transport thread would
    assert one.finished.wait(5)
    assert one.result is not None
    assert one.result[2] != threading.current_thread().name
