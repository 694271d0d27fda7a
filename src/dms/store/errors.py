"""Errors of the SQLite store.

::

    DMSError
     +-- StoreError                 the database cannot be opened, read or written
          +-- SchemaTooNew          the file was written by a newer dms (its user_version is ahead)
          +-- MigrationFailed       a migration raised; the file keeps its previous version
          +-- DatabaseBusy          another writer held the file longer than the busy timeout
"""

from __future__ import annotations

from dms.errors import DMSError


class StoreError(DMSError):
    """The database cannot be opened, read or written."""


class SchemaTooNew(StoreError):
    def __init__(self, path: str, found: int, known: int) -> None:
        self.found = found
        self.known = known
        super().__init__(
            f"database {path}: schema version {found} is newer than this dms knows (at most "
            f"{known}); upgrade dms or use another home"
        )


class MigrationFailed(StoreError):
    def __init__(self, path: str, version: int, name: str, reason: str) -> None:
        self.version = version
        super().__init__(
            f"database {path}: migration {version} ({name}) failed: {reason}; "
            f"the file was left at version {version - 1}"
        )


class DatabaseBusy(StoreError):
    def __init__(self, path: str, timeout_ms: int) -> None:
        super().__init__(
            f"database {path}: still locked by another writer after {timeout_ms} ms "
            "(is another dms node using this home?)"
        )
