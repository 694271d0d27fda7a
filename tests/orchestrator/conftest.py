from __future__ import annotations

import pytest
import trio.testing


@pytest.fixture
def clock() -> trio.testing.MockClock:
    """Virtual time that jumps only after the run has been idle for a moment of real time.

    The orchestrator's store runs SQLite on worker threads; an autojump threshold of 0 would
    let virtual time leap ahead while a thread is busy and fire deadlines that real code would
    never hit.
    """
    return trio.testing.MockClock(autojump_threshold=0.02)
