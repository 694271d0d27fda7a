"""The SQLite store: WAL, ordered migrations by user_version, atomic transactions, errors."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
import trio

from dms.store import (
    MIGRATIONS,
    Database,
    DatabaseBusy,
    Migration,
    MigrationFailed,
    SchemaTooNew,
    StoreError,
)
from dms.store.migrations import check_order

TABLE = Migration(1, "a table", ("CREATE TABLE t (x INTEGER PRIMARY KEY, v TEXT)",))


def count(db: Database) -> int:
    return db.query_sync(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0])


class TestMigrations:
    """Migrations run once, in order, each with its version bump in one transaction."""

    def test_the_node_schema_versions_run_one_two_three(self) -> None:
        assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))

    def test_a_new_file_is_migrated_to_the_latest_version_in_wal_mode(self, tmp_path: Path) -> None:
        with Database(tmp_path / "dms.sqlite3") as db:
            assert db.schema_version == len(MIGRATIONS)
            mode = db.query_sync(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0])
            assert mode == "wal"

    def test_reopening_runs_only_new_migrations(self, tmp_path: Path) -> None:
        runs: list[int] = []
        first = Migration(1, "one", ("CREATE TABLE t (x INTEGER)",), apply=lambda c: runs.append(1))
        second = Migration(
            2, "two", ("ALTER TABLE t ADD COLUMN y TEXT",), apply=lambda c: runs.append(2)
        )
        Database(tmp_path / "db", [first]).close()
        Database(tmp_path / "db", [first, second]).close()
        with Database(tmp_path / "db", [first, second]) as db:
            assert db.schema_version == 2
        assert runs == [1, 2]

    def test_a_file_from_a_newer_dms_is_refused(self, tmp_path: Path) -> None:
        later = (TABLE, Migration(2, "later", ("CREATE TABLE u (x)",)))
        Database(tmp_path / "db", later).close()
        with pytest.raises(SchemaTooNew, match="schema version 2 is newer than this dms knows"):
            Database(tmp_path / "db", [TABLE])

    def test_a_failing_migration_leaves_the_previous_version_and_no_half_schema(
        self, tmp_path: Path
    ) -> None:
        broken = Migration(2, "broken", ("CREATE TABLE u (x)", "THIS IS NOT SQL"))
        Database(tmp_path / "db", [TABLE]).close()
        with pytest.raises(MigrationFailed, match=r"migration 2 \(broken\) failed.*version 1"):
            Database(tmp_path / "db", [TABLE, broken])
        with Database(tmp_path / "db", [TABLE]) as db:
            assert db.schema_version == 1
            tables = db.query_sync(
                lambda c: [
                    r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")
                ]
            )
            assert "u" not in tables

    @pytest.mark.parametrize(
        "versions",
        [
            pytest.param([2], id="starts-at-2"),
            pytest.param([1, 1], id="duplicate"),
            pytest.param([1, 3], id="gap"),
        ],
    )
    def test_migration_lists_with_gaps_or_duplicates_are_refused(self, versions: list[int]) -> None:
        with pytest.raises(ValueError, match="expected"):
            check_order([Migration(v, f"m{v}") for v in versions])


class TestTransactions:
    """A transaction commits whole or not at all."""

    def test_an_error_rolls_the_whole_transaction_back(self, tmp_path: Path) -> None:
        with Database(tmp_path / "db", [TABLE]) as db:

            def half(conn: sqlite3.Connection) -> None:
                conn.execute("INSERT INTO t (v) VALUES ('a')")
                raise LookupError("boom")

            with pytest.raises(LookupError):
                db.transact_sync(half)
            assert count(db) == 0

    def test_sqlite_errors_become_store_errors(self, tmp_path: Path) -> None:
        with Database(tmp_path / "db", [TABLE]) as db:
            with pytest.raises(StoreError, match="no such table"):
                db.transact_sync(lambda c: c.execute("SELECT * FROM missing"))
            db.transact_sync(lambda c: c.execute("INSERT INTO t (v) VALUES ('ok')"))  # still usable
            assert count(db) == 1

    def test_a_nested_transaction_is_a_programming_error(self, tmp_path: Path) -> None:
        with Database(tmp_path / "db", [TABLE]) as db, pytest.raises(RuntimeError, match="nested"):
            db.transact_sync(lambda c: db.transact_sync(lambda c2: None))

    def test_a_writer_waits_for_another_and_reports_busy_after_its_timeout(
        self, tmp_path: Path
    ) -> None:
        with Database(tmp_path / "db", [TABLE]) as first:
            impatient = Database(tmp_path / "db", [TABLE], busy_timeout_ms=20)
            with first.transaction():
                with pytest.raises(DatabaseBusy, match="still locked"):
                    impatient.transact_sync(lambda c: c.execute("INSERT INTO t (v) VALUES ('x')"))
                # Readers are not blocked by the writer (WAL).
                assert impatient.query_sync(lambda c: c.execute("SELECT 1").fetchone()[0]) == 1
            impatient.transact_sync(lambda c: c.execute("INSERT INTO t (v) VALUES ('y')"))
            impatient.close()
            assert count(first) == 1

    def test_a_closed_database_refuses_work(self, tmp_path: Path) -> None:
        db = Database(tmp_path / "db", [TABLE])
        db.close()
        db.close()  # closing twice is fine
        with pytest.raises(StoreError, match="closed"):
            count(db)

    def test_a_file_that_cannot_be_opened_is_a_store_error(self, tmp_path: Path) -> None:
        with pytest.raises(StoreError, match="cannot open"):
            Database(tmp_path / "missing-dir" / "db")


class TestAsync:
    """Async callers run transactions on worker threads; cancellation never cuts one in half."""

    async def test_transact_and_query_from_trio(self, tmp_path: Path) -> None:
        with Database(tmp_path / "db", [TABLE]) as db:
            await db.transact(lambda c: c.execute("INSERT INTO t (v) VALUES ('a')"))
            assert await db.query(lambda c: c.execute("SELECT v FROM t").fetchone()[0]) == "a"

    async def test_a_cancelled_caller_still_commits_its_transaction(self, tmp_path: Path) -> None:
        started, proceed = threading.Event(), threading.Event()

        def slow(conn: sqlite3.Connection) -> None:
            started.set()
            proceed.wait(10)
            conn.execute("INSERT INTO t (v) VALUES ('done')")

        with Database(tmp_path / "db", [TABLE]) as db:
            scope = trio.CancelScope()

            async def caller() -> None:
                with scope:
                    await db.transact(slow)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(caller)
                await trio.to_thread.run_sync(started.wait)
                scope.cancel()
                proceed.set()
            assert count(db) == 1
