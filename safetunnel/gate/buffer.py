"""The remote bytes a gate has received but not yet consumed, read from the front without copying
the rest.

A pipelined backlog can be large, and a request cycle consumes only its own head and body: taking
a piece copies that piece only, and the consumed prefix is dropped once it is at least as large
as what remains, so every byte is copied a bounded number of times over the connection's life.
"""

from __future__ import annotations


class RemoteBuffer:
    """A FIFO of bytes; ``data`` from ``start`` on is what is unread."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.start = 0
        self._last = 0  # size of the most recent take, the most that can be given back

    def __len__(self) -> int:
        return len(self.data) - self.start

    def append(self, data: bytes) -> None:
        """Bytes that arrived from the remote."""
        self.data += data

    def peek(self, size: int) -> bytes:
        """A copy of at most ``size`` unread bytes, left unread."""
        return bytes(self.data[self.start : self.start + size])

    def take(self, size: int) -> bytes:
        """A copy of at most ``size`` unread bytes, now read."""
        if self.start and 2 * self.start >= len(self.data):
            # Cheap once the consumed prefix outweighs the rest: each byte moves O(1) times.
            del self.data[: self.start]
            self.start = 0
        piece = bytes(self.data[self.start : self.start + size])
        self.start += len(piece)
        self._last = len(piece)
        return piece

    def give_back(self, size: int) -> bool:
        """Unread the last ``size`` bytes of the most recent take (a parser did not use them).

        False, and nothing changes, when that take was shorter: the bytes may be gone, and
        guessing would shift where the next request starts.
        """
        if size > self._last:
            return False
        self.start -= size
        self._last -= size
        return True

    def take_all(self) -> bytes:
        """Everything unread, now read; the buffer is empty afterwards."""
        piece = bytes(self.data[self.start :])
        self.clear()
        return piece

    def clear(self) -> None:
        """Drop everything, read or not."""
        self.data = bytearray()
        self.start = self._last = 0
