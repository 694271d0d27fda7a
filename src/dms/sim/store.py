"""SQLite for simulated nodes: a real :class:`~dms.store.Database`, transactions on the loop.

A node's database normally runs each transaction on a worker thread. In a simulation the
transactions run in the event loop's thread instead:

* under trio's autojump clock a wait for a worker thread counts as idle, so virtual time would
  leap ahead (expiring holds, timing out invokes) while a transaction runs;
* with thousands of nodes in one process the hop to a thread and back costs more than the
  transaction itself (each is microseconds on an in-memory or page-cached file).

``":memory:"`` gives each node a private in-memory database; a path gives it a file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar

import anyio.lowlevel

from dms.store import Database

T = TypeVar("T")
MEMORY = ":memory:"


class InlineDatabase(Database):
    """A Database whose async transactions run in the calling (event loop) thread."""

    async def transact(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        await anyio.lowlevel.checkpoint()
        return self.transact_sync(fn)

    async def query(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        await anyio.lowlevel.checkpoint()
        return self.query_sync(fn)
