"""One thread that moves the bytes of every connection of a tunnel.

The OpenSSH engine hands each connection over as a unix socket, and the service is a TCP socket,
so one poll set can watch them all; a paramiko channel, which cannot be polled, pokes the loop
itself when it changes (see :meth:`RelayLoop.poke`). A thread per connection cost, measured at
50 concurrent clients, more in thread wake-ups and GIL hand-offs than in the work itself; one
loop that finds many connections ready per wake-up does the same work with a fraction of the
switches.

Everything a client does runs on the loop thread: :meth:`RelayLoop.watch` and :meth:`at` may be
called only from there. Other threads reach the loop only through :meth:`add`, :meth:`poke` and
:meth:`forget`, which queue a message and wake it. A socket closed by another thread
(teardown) may give its number to a new socket before the loop hears of the close, which is why
every registration checks whose number it is.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import math
import os
import select
import socket
import threading
from collections import deque
from collections.abc import Callable
from typing import Literal

from safetunnel.sharing.loopaccept import Acceptor
from safetunnel.sharing.looptypes import READ, STREAM, WRITE, Deferred, LoopClient
from safetunnel.sharing.loopwait import Waiter

log = logging.getLogger("safetunnel.sharing.relayloop")

__all__ = ["READ", "STREAM", "WRITE", "Deferred", "LoopClient", "RelayLoop"]

# What poll reports, as what a client can do next: a hang-up or an error is read (EOF, or the
# error from recv), and a write would report it too.
_AS_READ = select.POLLIN | select.POLLHUP | select.POLLERR
_AS_WRITE = select.POLLOUT | select.POLLHUP | select.POLLERR
# With nothing due, the loop still wakes now and then; nothing depends on it.
_IDLE_WAIT_MS = 5000
# Cancelled deadlines the timer heap may hold beyond twice the live ones before it is rebuilt.
_STALE_TIMERS = 256


_Message = tuple[Literal["add", "forget", "poke"], LoopClient]


class RelayLoop:
    """The loop thread, its poll set and its timers; started by the first :meth:`add`."""

    def __init__(
        self, name: str, clock: Callable[[], float], deferred: Deferred | None = None
    ) -> None:
        self._name = name
        self._clock = clock
        self._deferred = deferred
        self._ident: int | None = None
        # poll, not epoll: changing what a socket is watched for is then free (no system call),
        # and a share watches a few hundred sockets at most.
        self._poller = select.poll()
        self._watched: dict[int, tuple[LoopClient, int]] = {}  # fd: (client, events)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wake_fd = self._wake_r.fileno()
        self._poller.register(self._wake_fd, READ)
        self._waiter = Waiter(self._poller)
        self._inbox: deque[_Message] = deque()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._closed = False
        self._timers: list[tuple[float, int, LoopClient]] = []
        self._due: dict[LoopClient, float] = {}  # each client's current deadline
        self._order = itertools.count()
        self._clients: set[LoopClient] = set()

    def on_loop(self) -> bool:
        """The current thread is the loop's."""
        return threading.get_ident() == self._ident

    @property
    def closing(self) -> bool:
        """The loop is stopping: a client told anything now should close and finish."""
        return self._closing

    # -- any thread ------------------------------------------------------------------------------

    def add(self, client: LoopClient) -> None:
        """Hand ``client`` to the loop; after :meth:`close` it is told at once (``on_timer``)."""
        if threading.current_thread() is self._thread and not self._closing:
            self._clients.add(client)  # accepted by the loop itself: no message, no wake-up
            self._call(client.begin)
        elif not self.offer(client):
            client.on_timer()

    def offer(self, client: LoopClient) -> bool:
        """Queue ``client`` for the loop; False, and nothing done, once the loop is closing."""
        with self._lock:
            if self._closing:
                return False
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._post(("add", client))
            return True

    def serve(self, listener: socket.socket, on_accept: Callable[[socket.socket], None]) -> None:
        """Accept on ``listener`` (non-blocking) on the loop, passing each connection to
        ``on_accept`` there; closing the listener stops it."""
        self.add(Acceptor(self, listener, on_accept))

    def poke(self, client: LoopClient) -> None:
        """A stream of ``client`` that the loop cannot poll (a paramiko channel) may be ready:
        the loop calls ``client.on_ready(STREAM, READ | WRITE)`` soon. Any thread; never blocks."""
        with self._lock:
            if self._closing or self._thread is None:
                return
            if threading.current_thread() is self._thread:
                self._inbox.append(("poke", client))  # read before the loop waits again
            else:
                self._post(("poke", client))

    def forget(self, client: LoopClient) -> None:
        """``client`` closed its sockets on another thread: let it finish on the loop. (On the
        loop itself the step that closed it finishes it: every connection ends that way.)"""
        if threading.current_thread() is self._thread:
            return
        with self._lock:
            if not self._closing and self._thread is not None:
                self._post(("forget", client))

    def close(self) -> None:
        """Finish every message already queued, tell the clients still watched to finish, and stop
        the thread. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closing = self._closed = True
            thread = self._thread
            self._wake()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._wake_r.close()
        self._wake_w.close()

    def _post(self, message: _Message) -> None:
        """Queue a message; called with the lock held. Only the first of a burst wakes the loop."""
        self._inbox.append(message)
        if len(self._inbox) == 1:
            self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    # -- loop thread -----------------------------------------------------------------------------

    def watch(self, client: LoopClient, fd: int, events: int) -> None:
        """Watch ``fd`` of ``client`` for ``events`` (0: not at all). A number that is someone
        else's now (our socket closed meanwhile, and a new one got it) is left to its owner."""
        owner = self._watched.get(fd)
        if events == 0:
            if owner is not None and owner[0] is client:
                del self._watched[fd]
                self._poller.unregister(fd)
            return
        if owner is None or owner[1] != events or owner[0] is not client:
            self._watched[fd] = (client, events)
            self._poller.register(fd, events)  # registers anew or changes the events

    def at(self, client: LoopClient, deadline: float | None) -> None:
        """Call ``client.on_timer()`` once ``deadline`` (the loop's clock) has passed; None
        cancels. Only the latest deadline of a client counts."""
        if deadline is None:
            self._due.pop(client, None)
            return
        if self._due.get(client) == deadline:
            return
        self._due[client] = deadline
        heapq.heappush(self._timers, (deadline, next(self._order), client))
        if len(self._timers) > 2 * len(self._due) + _STALE_TIMERS:
            # A cancelled deadline holds its client until it comes: ~1,900 finished connections
            # at 50 clients stayed alive so, for the cyclic collector to scan again and again.
            self._timers = [entry for entry in self._timers if self._due.get(entry[2]) == entry[0]]
            heapq.heapify(self._timers)

    def answer_likely(self) -> None:
        """A step sent a request or an answer: the next wait may first be awake (loopwait)."""
        self._waiter.answer_likely()

    def after(self, client: LoopClient, delay: float) -> None:
        """:meth:`at`, ``delay`` seconds from now on the loop's clock."""
        self.at(client, self._clock() + delay)

    def done(self, client: LoopClient) -> None:
        """``client`` is over and has unwatched its sockets."""
        self._due.pop(client, None)
        self._clients.discard(client)

    def _run(self) -> None:
        self._ident = threading.get_ident()
        try:
            while self._turn():
                pass
        finally:
            self._finish_all()
            if self._deferred is not None:
                self._call(self._deferred.flush)
            self._ident = None  # a thread started later may get this number: not the loop

    def _turn(self) -> bool:
        """One wake-up: ready sockets, then messages, then timers. False once closing."""
        for fd, polled in self._waiter.poll(self._wait()):
            if fd == self._wake_fd:
                with contextlib.suppress(OSError):
                    self._wake_r.recv(4096)
                continue
            owner = self._watched.get(fd)
            if owner is None:
                continue
            if polled & select.POLLNVAL:
                if _is_open(fd):
                    continue  # stale: a new socket got the number since, and is watched anew
                # Closed elsewhere: its client finds out by reading (and finishes).
                del self._watched[fd]
                self._poller.unregister(fd)
                polled = select.POLLIN
            events = (READ if polled & _AS_READ else 0) | (WRITE if polled & _AS_WRITE else 0)
            self._call(owner[0].on_ready, fd, events)
        while True:
            with self._lock:
                if not self._inbox:
                    return not self._closing
                kind, client = self._inbox.popleft()
            if kind == "add":
                self._clients.add(client)
                self._call(client.begin)
            elif client in self._clients and kind == "poke":
                self._call(client.on_ready, STREAM, READ | WRITE)
            elif client in self._clients:
                self._call(client.on_timer)

    def _wait(self) -> int:
        """How long poll may wait, in milliseconds (rounded up: waking early only loops)."""
        self._fire_timers()
        later = self._run_deferred()
        if self._inbox:
            return 0
        wait = _IDLE_WAIT_MS if later is None else math.ceil(later * 1000)
        if self._timers:
            left = self._timers[0][0] - self._clock()
            wait = min(wait, math.ceil(left * 1000))
        return max(0, min(_IDLE_WAIT_MS, wait))

    def _run_deferred(self) -> float | None:
        if self._deferred is None:
            return None
        try:
            return self._deferred.run_due()
        except Exception:  # as in _call: a bug there must not stop the loop
            log.exception("deferred work of the relay loop failed")
            return None

    def _fire_timers(self) -> None:
        now = self._clock()
        while self._timers and self._timers[0][0] <= now:
            deadline, _, client = heapq.heappop(self._timers)
            if self._due.get(client) == deadline:
                del self._due[client]
                self._call(client.on_timer)

    def _call(self, step: Callable[..., None], *args: int) -> None:
        """Clients catch their own errors; one that escapes is a bug, and must not stop the loop
        (every other connection of the share runs on it)."""
        try:
            step(*args)
        except Exception:
            log.exception("a relayed connection failed")

    def _finish_all(self) -> None:
        """On close: every client still here is told to finish (it sees itself closed)."""
        for client in list(self._clients):
            self._call(client.on_timer)
        self._clients.clear()
        self._timers.clear()
        self._due.clear()


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True
