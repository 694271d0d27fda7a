"""Deployments in SQLite: save, load, list with filters and paging, prune."""

from __future__ import annotations

import sqlite3

import msgspec

from dms.jobs.status import DeploymentStatus
from dms.orchestrator.messages import DeploymentPage, ListDeployments
from dms.orchestrator.records import DeploymentRecord
from dms.store import Database

_encode = msgspec.msgpack.Encoder().encode
_decode_record = msgspec.msgpack.Decoder(DeploymentRecord).decode
_decode_metadata = msgspec.json.Decoder(dict[str, str]).decode

MAX_PAGE = 500
FINAL = (DeploymentStatus.COMPLETED.value, DeploymentStatus.FAILED.value)


class DeploymentRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def save(self, record: DeploymentRecord) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                """
                INSERT INTO deployments
                    (id, name, status, created_ns, updated_ns, finished_ns, metadata, record)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (id) DO UPDATE SET
                    name = excluded.name, status = excluded.status,
                    updated_ns = excluded.updated_ns, finished_ns = excluded.finished_ns,
                    metadata = excluded.metadata, record = excluded.record
                """,
                (
                    record.deployment_id,
                    record.name,
                    record.status.value,
                    record.created_ns,
                    record.updated_ns,
                    record.finished_ns,
                    msgspec.json.encode(record.metadata),
                    _encode(record),
                ),
            )

        await self.db.transact(write)

    async def get(self, deployment_id: str) -> DeploymentRecord | None:
        def read(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(
                "SELECT record FROM deployments WHERE id = ?", (deployment_id,)
            ).fetchone()
            return None if row is None else bytes(row[0])

        blob = await self.db.query(read)
        return None if blob is None else _decode_record(blob)

    async def unfinished(self) -> list[DeploymentRecord]:
        def read(conn: sqlite3.Connection) -> list[bytes]:
            rows = conn.execute(
                "SELECT record FROM deployments WHERE status NOT IN (?, ?) ORDER BY created_ns",
                FINAL,
            ).fetchall()
            return [bytes(r[0]) for r in rows]

        return [_decode_record(b) for b in await self.db.query(read)]

    async def page(self, query: ListDeployments) -> DeploymentPage:
        limit = max(1, min(query.limit, MAX_PAGE))
        offset = max(0, query.offset)

        def read(conn: sqlite3.Connection) -> tuple[list[str], int]:
            where: list[str] = ["1 = 1"]
            args: list[object] = []
            if query.status:
                where.append(f"status IN ({', '.join('?' * len(query.status))})")
                args.extend(s.value for s in query.status)
            if query.created_after_ns:
                where.append("created_ns > ?")
                args.append(query.created_after_ns)
            if query.created_before_ns:
                where.append("created_ns < ?")
                args.append(query.created_before_ns)
            rows = conn.execute(
                f"SELECT id, metadata FROM deployments WHERE {' AND '.join(where)} "
                "ORDER BY created_ns DESC, id",
                args,
            ).fetchall()
            ids = [
                row[0]
                for row in rows
                if all(
                    _decode_metadata(bytes(row[1])).get(k) == v for k, v in query.metadata.items()
                )
            ]
            return ids[offset : offset + limit], len(ids)

        ids, total = await self.db.query(read)
        records = [r for r in [await self.get(i) for i in ids] if r is not None]
        next_offset = offset + limit if offset + limit < total else None
        return DeploymentPage(
            items=tuple(r.summary() for r in records), total=total, next_offset=next_offset
        )

    async def prune(self, before_ns: int) -> list[str]:
        """Delete finished deployments (finished before ``before_ns``, or any when 0)."""

        def write(conn: sqlite3.Connection) -> list[str]:
            sql = "SELECT id FROM deployments WHERE status IN (?, ?)"
            args: list[object] = list(FINAL)
            if before_ns:
                sql += " AND finished_ns < ?"
                args.append(before_ns)
            ids = [row[0] for row in conn.execute(sql, args).fetchall()]
            conn.executemany("DELETE FROM deployments WHERE id = ?", [(i,) for i in ids])
            return ids

        return await self.db.transact(write)
