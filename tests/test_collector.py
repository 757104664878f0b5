"""A serving share's garbage collector: set-up objects frozen, young collections rare."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from safetunnel.cli.collector import YOUNG_THRESHOLD, settle_collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


@pytest.mark.usefixtures("restored_collector")
def test_settling_freezes_what_exists_and_raises_only_the_young_threshold() -> None:
    _, middle, old = gc.get_threshold()
    gc.unfreeze()
    settle_collector()
    assert gc.get_freeze_count() > 0  # what exists now is left out of every collection
    assert gc.get_threshold() == (YOUNG_THRESHOLD, middle, old)
