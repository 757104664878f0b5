"""How a serving share sets Python's cyclic garbage collector, once its tunnel is up."""

from __future__ import annotations

import gc

# A finished connection's objects are freed by reference counting (nothing of it is left in a
# cycle), so the cyclic collector mostly scans connections still open. At the default
# threshold (700) it ran every ~30 connections at 50 clients: ~12 µs per connection and pauses
# of a few ms each (measured with gc.callbacks). At this one, it runs a few times a minute.
YOUNG_THRESHOLD = 10_000


def settle_collector() -> None:
    """What setting up left over goes; the rest lives as long as the share, so collections need
    not scan it again; and young collections become rare. The CLI's choice: the Python API
    leaves the caller's collector alone."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
