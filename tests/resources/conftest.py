from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dms.clock import ManualClock
from dms.store import Database
from tests.resources.helpers import SyncLedger


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    with Database(tmp_path / "dms.sqlite3") as database:
        yield database


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def book(db: Database, clock: ManualClock) -> SyncLedger:
    return SyncLedger(db, clock)
