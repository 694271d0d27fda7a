"""The node's SQLite store: one database file in the home, schema migrations, transactions.

Other packages keep their tables here (their SQL sits with them; their ``CREATE TABLE`` goes in
:mod:`dms.store.migrations`) and run every change through :meth:`Database.transact`.
"""

from dms.store.database import Database
from dms.store.errors import DatabaseBusy, MigrationFailed, SchemaTooNew, StoreError
from dms.store.migrations import MIGRATIONS, Migration

__all__ = [
    "MIGRATIONS",
    "Database",
    "DatabaseBusy",
    "Migration",
    "MigrationFailed",
    "SchemaTooNew",
    "StoreError",
]
