"""The node's SQLite database: one file in the home, WAL, migrated on open.

Every change is one transaction. Writes start with ``BEGIN IMMEDIATE`` so that a
read-check-write sequence (is there room? then reserve) holds the write lock from its first
read: two connections, threads or processes can never both see the same free resources.
Reads run in a deferred transaction and see one consistent snapshot (WAL readers never block
the writer).

The connection is shared by the threads of one process behind a lock; async callers go through
``anyio.to_thread`` (:meth:`Database.transact`, :meth:`Database.query`), and a cancelled caller
still waits for its transaction to finish, so a transaction is never cut in half.

``synchronous=NORMAL``: a committed transaction survives a crash of the process; a power cut
may lose the last few, never corrupts the file. After a power cut no workload is still running,
and the start-up sanity check reconciles whatever the file remembers.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

import anyio.to_thread
import structlog

from dms.log import get_logger
from dms.store.errors import DatabaseBusy, MigrationFailed, SchemaTooNew, StoreError
from dms.store.migrations import MIGRATIONS, Migration, check_order

T = TypeVar("T")


def _logger() -> structlog.typing.FilteringBoundLogger:
    # Looked up per use: a module-level bound logger would freeze the logging set-up at import.
    return get_logger(component="store")


class Database:
    """One SQLite file, opened and migrated; use it from threads or from async code."""

    def __init__(
        self,
        path: Path | str,
        migrations: Sequence[Migration] = MIGRATIONS,
        *,
        busy_timeout_ms: int = 10_000,
    ) -> None:
        check_order(migrations)
        self.path = str(path)
        self.busy_timeout_ms = busy_timeout_ms
        self._lock = threading.Lock()
        self._owner: int | None = None
        try:
            self._conn = sqlite3.connect(
                self.path,
                timeout=busy_timeout_ms / 1000,
                isolation_level=None,  # we issue BEGIN / COMMIT ourselves
                check_same_thread=False,  # shared behind self._lock
            )
        except sqlite3.Error as exc:
            raise StoreError(f"database {self.path}: cannot open: {exc}") from exc
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._migrate(migrations)
        except BaseException:
            self._conn.close()
            raise
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._conn.close()
                self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return self.query_sync(_user_version)

    # -- transactions ---------------------------------------------------------------------

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """A transaction on this connection: committed on success, rolled back on any error.

        Not re-entrant: a transaction inside another one on the same Database is a programming
        error and raises RuntimeError rather than deadlocking.
        """
        if self._owner == threading.get_ident():
            raise RuntimeError("nested transaction on one Database; pass the connection down")
        with self._lock:
            if self._closed:
                raise StoreError(f"database {self.path}: already closed")
            self._owner = threading.get_ident()
            try:
                self._execute("BEGIN IMMEDIATE" if write else "BEGIN DEFERRED")
                try:
                    yield self._conn
                except BaseException:
                    self._conn.rollback()
                    raise
                self._execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.rollback()
                raise self._translate(exc) from exc
            finally:
                self._owner = None

    def transact_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` in a write transaction, in the calling thread."""
        with self.transaction(write=True) as conn:
            return fn(conn)

    def query_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` in a read transaction (one consistent snapshot)."""
        with self.transaction(write=False) as conn:
            return fn(conn)

    async def transact(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` in a write transaction on a worker thread."""
        return await anyio.to_thread.run_sync(self.transact_sync, fn)

    async def query(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` in a read transaction on a worker thread."""
        return await anyio.to_thread.run_sync(self.query_sync, fn)

    # -- internals ------------------------------------------------------------------------

    def _execute(self, sql: str) -> None:
        self._conn.execute(sql)

    def _translate(self, exc: sqlite3.Error) -> StoreError:
        text = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
            return DatabaseBusy(self.path, self.busy_timeout_ms)
        return StoreError(f"database {self.path}: {text}")

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        known = len(migrations)
        found = _user_version(self._conn)
        if found > known:
            raise SchemaTooNew(self.path, found, known)
        for migration in migrations[found:]:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                # Another process may have migrated while we waited for the lock.
                if _user_version(self._conn) >= migration.version:
                    self._conn.execute("COMMIT")
                    continue
                for statement in migration.statements:
                    self._conn.execute(statement)
                if migration.apply is not None:
                    migration.apply(self._conn)
                self._conn.execute(f"PRAGMA user_version = {int(migration.version)}")
                self._conn.execute("COMMIT")
            except Exception as exc:
                if self._conn.in_transaction:
                    self._conn.rollback()
                if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                    raise DatabaseBusy(self.path, self.busy_timeout_ms) from exc
                raise MigrationFailed(
                    self.path, migration.version, migration.name, str(exc)
                ) from exc
            _logger().debug(
                "migrated", path=self.path, version=migration.version, name=migration.name
            )


def _user_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])
