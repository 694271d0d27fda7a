from __future__ import annotations

from collections.abc import Iterator

import pytest

from dms.log import configure


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    """Dozens of nodes log every bid and commit at info level: keep the tests to warnings."""
    configure("warning")
    yield
