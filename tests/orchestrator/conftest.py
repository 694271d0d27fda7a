from __future__ import annotations

import pytest
import trio.testing


@pytest.fixture
def clock() -> trio.testing.MockClock:
    """Virtual time that jumps as soon as every task waits (the harness's SQLite runs inline,
    so no worker thread is ever busy while time jumps)."""
    return trio.testing.MockClock(autojump_threshold=0)
