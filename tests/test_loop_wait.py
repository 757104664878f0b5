"""The relay loop's wait: awake for a moment after a small exchange while waits are short,
asleep at once otherwise. A scripted poller records what the waiter asks of it."""

from __future__ import annotations

import select
import time

import pytest

from safetunnel.sharing import loopwait
from safetunnel.sharing.loopwait import Waiter

READY = [(5, select.POLLIN)]


class Poller:
    """Answers poll() from a script (a list of results, or a sleep before an empty one)."""

    def __init__(self, script: list[list[tuple[int, int]] | float]) -> None:
        self.script = script
        self.calls: list[int] = []

    def poll(self, timeout: int) -> list[tuple[int, int]]:
        self.calls.append(timeout)
        step = self.script.pop(0) if self.script else []
        if isinstance(step, float):
            time.sleep(step)
            return []
        return step


def waiter(script: list[list[tuple[int, int]] | float]) -> tuple[Waiter, Poller]:
    poller = Poller(script)
    return Waiter(poller), poller  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def two_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loopwait, "SPIN_SECONDS", 0.0003)


def test_after_a_short_wait_and_a_small_exchange_it_waits_awake() -> None:
    w, poller = waiter([READY, [], [], READY])
    assert w.poll(100) == READY  # a short wait (answered at once)
    w.answer_likely()
    assert w.poll(100) == READY
    assert poller.calls == [100, 0, 0, 0]  # awake: polled without sleeping until it came


def test_without_a_small_exchange_it_sleeps_at_once() -> None:
    w, poller = waiter([READY, READY])
    w.poll(100)
    assert w.poll(100) == READY
    assert poller.calls == [100, 100]


def test_a_long_wait_stops_the_spinning_until_a_short_one() -> None:
    w, poller = waiter([0.002, READY, READY, READY])
    w.poll(100)  # took 2 ms: far longer than a spin
    w.answer_likely()
    w.poll(100)
    assert poller.calls == [100, 100]  # asleep at once, though an answer was likely
    w.answer_likely()
    w.poll(100)
    assert poller.calls[-1] == 0  # the last wait was short again: awake first


def test_a_spin_that_finds_nothing_ends_in_the_sleep_it_saved() -> None:
    w, poller = waiter([READY])  # then nothing, however often it asks
    w.poll(100)
    w.answer_likely()
    assert w.poll(100) == []
    assert poller.calls[1] == 0 and poller.calls[-1] == 100


def test_no_spin_with_one_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loopwait, "SPIN_SECONDS", 0.0)
    w, poller = waiter([READY, READY])
    w.poll(100)
    w.answer_likely()
    w.poll(100)
    assert poller.calls == [100, 100]
