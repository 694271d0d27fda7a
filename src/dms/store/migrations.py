"""Schema migrations: one ordered list, versioned by ``PRAGMA user_version``.

A migration runs once, in its own transaction together with the version bump, so a file is
always at exactly one version. To change the schema, append ``Migration(N + 1, ...)`` to
:data:`MIGRATIONS` (a package that needs tables adds its migration here); never edit or reorder
one that has shipped. ``tests/store`` pins that the versions run 1, 2, 3, ... without gaps.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...] = ()
    """SQL statements, run in order."""
    apply: Callable[[sqlite3.Connection], None] | None = field(default=None, compare=False)
    """Optional Python step after the statements (data migrations)."""


def check_order(migrations: Sequence[Migration]) -> None:
    """Versions must be 1, 2, 3, ... in order: a gap or a duplicate is a programming error."""
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise ValueError(
                f"migration {migration.name!r} has version {migration.version}; "
                f"expected {expected} (versions run 1, 2, 3, ... in order)"
            )


RESOURCES_V1 = Migration(
    1,
    "resources: onboarded pool, onboarding record, reservations, ports",
    (
        # The onboarded pool: one row while onboarded. `draining` is set while an offboard
        # stops running allocations, so that nothing new is reserved meanwhile.
        """
        CREATE TABLE onboarded_pool (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            resources BLOB NOT NULL,
            draining INTEGER NOT NULL DEFAULT 0,
            updated_ns INTEGER NOT NULL
        )
        """,
        # What the owner asked for (price, location, amounts), kept by dms.onboarding.
        """
        CREATE TABLE onboarding (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            record BLOB NOT NULL
        )
        """,
        # One row per reservation: HELD (for a bid) -> COMMITTED -> ALLOCATED -> RELEASED.
        """
        CREATE TABLE reservations (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            bid_id TEXT,
            allocation_id TEXT UNIQUE,
            state TEXT NOT NULL,
            requested BLOB NOT NULL,
            resources BLOB NOT NULL,
            ports BLOB NOT NULL,
            port_request BLOB NOT NULL,
            expires_ns INTEGER,
            created_ns INTEGER NOT NULL,
            updated_ns INTEGER NOT NULL,
            reason TEXT NOT NULL DEFAULT ''
        )
        """,
        "CREATE INDEX reservations_bid ON reservations (bid_id)",
        """
        CREATE UNIQUE INDEX reservations_live_bid ON reservations (bid_id)
        WHERE bid_id IS NOT NULL AND state IN ('held', 'committed', 'allocated')
        """,
        """
        CREATE INDEX reservations_live ON reservations (state, expires_ns)
        WHERE state IN ('held', 'committed', 'allocated')
        """,
        "CREATE INDEX reservations_updated ON reservations (updated_ns)",
        # Ports reserved per allocation; the primary key makes a double booking impossible.
        """
        CREATE TABLE ports (
            port INTEGER PRIMARY KEY,
            allocation_id TEXT NOT NULL
        )
        """,
        "CREATE INDEX ports_allocation ON ports (allocation_id)",
    ),
)

ORCHESTRATOR_V1 = Migration(
    2,
    "orchestrator: deployments (desired and observed state)",
    (
        # One row per deployment; `record` is the whole msgpack DeploymentRecord, the other
        # columns are copies for filtering and paging.
        """
        CREATE TABLE deployments (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            status TEXT NOT NULL,
            created_ns INTEGER NOT NULL,
            updated_ns INTEGER NOT NULL,
            finished_ns INTEGER NOT NULL DEFAULT 0,
            metadata BLOB NOT NULL,
            record BLOB NOT NULL
        )
        """,
        "CREATE INDEX deployments_status ON deployments (status, created_ns)",
        "CREATE INDEX deployments_created ON deployments (created_ns)",
    ),
)

MIGRATIONS: tuple[Migration, ...] = (RESOURCES_V1, ORCHESTRATOR_V1)
"""The node's schema, in order. Append new migrations at the end."""

check_order(MIGRATIONS)
