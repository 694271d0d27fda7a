"""Resource accounting as functions over one SQLite transaction.

Each function takes the connection of a write transaction (``Database.transact``) and the
current time, so a check and the write that depends on it are one atomic step, and callers can
combine a ledger step with their own writes (onboarding stores its record in the same
transaction). :class:`~dms.resources.manager.ResourceManager` is the async face of this module.

Rules kept here:

* free = onboarded - held - committed - allocated, in every dimension and per GPU device;
  nothing is taken unless it fits in free (an exact fit fits);
* every operation first expires the holds and commits whose time has passed, so an expired
  reservation never blocks a new one even before the background reclaimer runs;
* operations are idempotent per id: a repeat with the same arguments returns the reservation,
  a repeat with other arguments raises :class:`ReservationConflict`, and a repeat after the
  reservation ended raises :class:`ReservationClosed`.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable

import msgspec

from dms.errors import InsufficientResources
from dms.resources import ports as port_table
from dms.resources.errors import (
    AllocationsRunning,
    Draining,
    InvalidRequest,
    InvalidTransition,
    NotOnboarded,
    ReservationClosed,
    ReservationConflict,
    ReservationError,
    ReservationNotFound,
    StillReserved,
)
from dms.resources.ports import PortProbe, PortRange, can_bind
from dms.resources.records import (
    TRANSITIONS,
    Pools,
    PortRequest,
    Reservation,
    ReservationState,
)
from dms.store.errors import StoreError
from dms.types import CPU, Resources

_encode = msgspec.json.Encoder().encode
_decode_resources = msgspec.json.Decoder(Resources).decode
_decode_ports = msgspec.json.Decoder(tuple[int, ...]).decode
_decode_port_request = msgspec.json.Decoder(PortRequest).decode

_COLUMNS = (
    "bid_id, allocation_id, state, requested, resources, ports, port_request, "
    "expires_ns, created_ns, updated_ns, reason"
)
_LIVE = "('held', 'committed', 'allocated')"
NO_PORTS = PortRequest()
DEFAULT_PORT_RANGE = PortRange()

Row = tuple[str | None, str | None, str, bytes, bytes, bytes, bytes, int | None, int, int, str]


def _reservation(row: Row) -> Reservation:
    return Reservation(
        bid_id=row[0],
        allocation_id=row[1],
        state=ReservationState(row[2]),
        requested=_decode_resources(row[3]),
        resources=_decode_resources(row[4]),
        ports=_decode_ports(row[5]),
        port_request=_decode_port_request(row[6]),
        expires_ns=row[7],
        created_ns=row[8],
        updated_ns=row[9],
        reason=row[10],
    )


def _select(conn: sqlite3.Connection, where: str, args: Iterable[object] = ()) -> list[Reservation]:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM reservations WHERE {where}", tuple(args))
    return [_reservation(r) for r in rows.fetchall()]


def _total(reservations: Iterable[Reservation]) -> Resources:
    return _sum(r.resources for r in reservations)


def _sum(amounts: Iterable[Resources]) -> Resources:
    total = Resources()
    for amount in amounts:
        total = total.add(amount)
    return total


def _same(a: Resources, b: Resources) -> bool:
    return a.normalized() == b.normalized()


# -- reading ----------------------------------------------------------------------------------


def read_pool(conn: sqlite3.Connection) -> tuple[Resources | None, bool]:
    """The onboarded resources (None when not onboarded) and whether an offboard is draining."""
    row = conn.execute("SELECT resources, draining FROM onboarded_pool WHERE id = 1").fetchone()
    if row is None:
        return None, False
    return _decode_resources(row[0]), bool(row[1])


def live(conn: sqlite3.Connection) -> list[Reservation]:
    """Reservations that take resources (HELD, COMMITTED, ALLOCATED), oldest first."""
    return _select(conn, f"state IN {_LIVE} ORDER BY seq")


def _live_usage(conn: sqlite3.Connection) -> list[tuple[ReservationState, int | None, Resources]]:
    """(state, expiry, resources) of each live reservation, oldest first: what the pools are
    made of, without decoding the rest of every row (a provider reads its pools per bid)."""
    rows = conn.execute(
        f"SELECT state, expires_ns, resources FROM reservations WHERE state IN {_LIVE} ORDER BY seq"
    ).fetchall()
    return [
        (ReservationState(state), expires, _decode_resources(res)) for state, expires, res in rows
    ]


def by_allocation(conn: sqlite3.Connection, allocation_id: str) -> Reservation | None:
    found = _select(conn, "allocation_id = ?", (allocation_id,))
    return found[0] if found else None


def by_bid(conn: sqlite3.Connection, bid_id: str) -> Reservation | None:
    """The latest reservation made for a bid."""
    found = _select(conn, "bid_id = ? ORDER BY seq DESC LIMIT 1", (bid_id,))
    return found[0] if found else None


def in_state(conn: sqlite3.Connection, *states: ReservationState) -> list[Reservation]:
    marks = ", ".join("?" for _ in states)
    return _select(conn, f"state IN ({marks}) ORDER BY seq", [s.value for s in states])


def pools(conn: sqlite3.Connection, now_ns: int) -> Pools:
    """The pools as of ``now_ns`` (holds and commits past their expiry count as gone).

    Read-only, so it can run in a read transaction.
    """
    onboarded, draining = read_pool(conn)
    counted = [u for u in _live_usage(conn) if u[1] is None or u[1] > now_ns]
    by_state = {
        s: _sum(resources for state, _, resources in counted if state is s)
        for s in (ReservationState.HELD, ReservationState.COMMITTED, ReservationState.ALLOCATED)
    }
    base = onboarded or Resources()
    used = _sum(resources for _, _, resources in counted)
    try:
        free = base.subtract(used)
    except InsufficientResources as exc:
        raise StoreError(f"resource accounting is inconsistent: {exc}") from exc
    return Pools(
        onboarded=base,
        held=by_state[ReservationState.HELD],
        committed=by_state[ReservationState.COMMITTED],
        allocated=by_state[ReservationState.ALLOCATED],
        free=free,
        is_onboarded=onboarded is not None,
        draining=draining,
    )


def invariant_violation(conn: sqlite3.Connection) -> str | None:
    """Why held + committed + allocated exceeds onboarded (per dimension and GPU), or None.

    Counts every live row, expired or not, so it is the strictest reading of the store.
    """
    onboarded, _ = read_pool(conn)
    rows = live(conn)
    if onboarded is None:
        return f"{len(rows)} live reservations while not onboarded" if rows else None
    short = onboarded.shortfall(_total(rows))
    return str(short) if short else None


# -- expiry -----------------------------------------------------------------------------------


def expire_due(conn: sqlite3.Connection, now_ns: int) -> list[Reservation]:
    """Mark holds and commits whose time has passed EXPIRED, and free their ports."""
    rows = conn.execute(
        f"UPDATE reservations SET state = 'expired', updated_ns = ?, reason = 'expired' "
        f"WHERE state IN ('held', 'committed') AND expires_ns <= ? RETURNING {_COLUMNS}",
        (now_ns, now_ns),
    ).fetchall()
    expired = [_reservation(r) for r in rows]
    for r in expired:
        if r.allocation_id:
            port_table.release(conn, r.allocation_id)
    return expired


# -- onboarding -------------------------------------------------------------------------------


def set_onboarded(conn: sqlite3.Connection, resources: Resources, now_ns: int) -> None:
    """Onboard, or change the onboarded amounts; refused if they would not cover what is taken."""
    expire_due(conn, now_ns)
    _, draining = read_pool(conn)
    if draining:
        raise Draining("change the onboarded resources")
    taken = live(conn)
    short = resources.shortfall(_total(taken))
    if short is not None:
        raise StillReserved(tuple(r.ident for r in taken), str(short))
    conn.execute(
        "INSERT INTO onboarded_pool (id, resources, draining, updated_ns) VALUES (1, ?, 0, ?) "
        "ON CONFLICT (id) DO UPDATE SET resources = excluded.resources, "
        "updated_ns = excluded.updated_ns",
        (_encode(resources), now_ns),
    )


def running(conn: sqlite3.Connection) -> list[Reservation]:
    """Reservations that stop an offboard: committed or allocated."""
    return in_state(conn, ReservationState.COMMITTED, ReservationState.ALLOCATED)


def start_draining(conn: sqlite3.Connection, now_ns: int) -> list[Reservation]:
    """Stop taking new reservations (an offboard is under way); returns what still runs."""
    onboarded, _ = read_pool(conn)
    if onboarded is None:
        raise NotOnboarded("offboard")
    expire_due(conn, now_ns)
    conn.execute("UPDATE onboarded_pool SET draining = 1, updated_ns = ? WHERE id = 1", (now_ns,))
    _release_all(conn, in_state(conn, ReservationState.HELD), now_ns, "offboarding")
    return running(conn)


def clear_onboarded(
    conn: sqlite3.Connection, now_ns: int, *, force: bool, reason: str = "offboarded"
) -> list[Reservation]:
    """Offboard. Without ``force``, refused while anything is committed or allocated.

    Holds are released; with ``force`` everything live is released (the caller stopped the
    workloads first). Returns the reservations it released.
    """
    onboarded, _ = read_pool(conn)
    if onboarded is None:
        raise NotOnboarded("offboard")
    expire_due(conn, now_ns)
    blocking = running(conn)
    if blocking and not force:
        listed = ", ".join(f"{r.allocation_id} ({r.state})" for r in blocking)
        raise AllocationsRunning(tuple(r.allocation_id or "" for r in blocking), listed)
    released = _release_all(conn, live(conn), now_ns, reason)
    conn.execute("DELETE FROM onboarded_pool WHERE id = 1")
    return released


def _release_all(
    conn: sqlite3.Connection, rows: list[Reservation], now_ns: int, reason: str
) -> list[Reservation]:
    return [_move(conn, r, ReservationState.RELEASED, now_ns, reason) for r in rows]


# -- the reservation lifecycle ------------------------------------------------------------------


def _take(conn: sqlite3.Connection, requested: Resources, operation: str) -> Resources:
    """The concrete resources for ``requested`` from what is free, or InsufficientResources."""
    onboarded, draining = read_pool(conn)
    if onboarded is None:
        raise NotOnboarded(operation)
    if draining:
        raise Draining(operation)
    free = onboarded.subtract(_sum(resources for _, _, resources in _live_usage(conn)))
    free.subtract(requested)  # raises InsufficientResources naming the dimension
    return Resources(
        cpu=CPU(cores=requested.cpu.cores),
        ram=requested.ram,
        disk=requested.disk,
        gpus=free.assign_gpus(requested.gpus),
    )


def _check_requested(requested: Resources) -> None:
    """Amounts must be finite and not negative: a negative need would grow the free pool."""
    cores = requested.cpu.cores
    if not math.isfinite(cores) or cores < 0:
        raise InvalidRequest("resources.cpu.cores", cores, "a number of cores of at least 0")
    for field, value in (("resources.ram", requested.ram), ("resources.disk", requested.disk)):
        if value < 0:
            raise InvalidRequest(field, value, "a size of at least 0 bytes")
    for i, gpu in enumerate(requested.gpus):
        if gpu.vram < 0:
            raise InvalidRequest(
                f"resources.gpus[{i}].vram", gpu.vram, "a size of at least 0 bytes"
            )


def _check_ttl(ttl_ns: int) -> None:
    if ttl_ns <= 0:
        raise ReservationError(f"ttl: {ttl_ns} ns is not a duration greater than 0")


def _insert(
    conn: sqlite3.Connection,
    *,
    bid_id: str | None,
    allocation_id: str | None,
    state: ReservationState,
    requested: Resources,
    taken: Resources,
    ports: tuple[int, ...],
    port_request: PortRequest,
    expires_ns: int | None,
    now_ns: int,
    reason: str = "",
) -> Reservation:
    row = conn.execute(
        f"INSERT INTO reservations ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        f"RETURNING {_COLUMNS}",
        (
            bid_id,
            allocation_id,
            state.value,
            _encode(requested),
            _encode(taken),
            _encode(ports),
            _encode(port_request),
            expires_ns,
            now_ns,
            now_ns,
            reason,
        ),
    ).fetchone()
    return _reservation(row)


def _move(
    conn: sqlite3.Connection,
    current: Reservation,
    target: ReservationState,
    now_ns: int,
    reason: str = "",
    *,
    allocation_id: str | None = None,
    expires_ns: int | None = None,
    ports: tuple[int, ...] | None = None,
    port_request: PortRequest | None = None,
) -> Reservation:
    """Apply one state transition (checked against TRANSITIONS) to a stored reservation."""
    if not current.state.can_become(target):
        allowed = ", ".join(sorted(TRANSITIONS[current.state]))
        raise InvalidTransition(current.ident, current.state, target, allowed)
    if not target.live and current.allocation_id:
        port_table.release(conn, current.allocation_id)
    key, value = (
        ("allocation_id", current.allocation_id)
        if current.allocation_id
        else ("bid_id", current.bid_id)
    )
    row = conn.execute(
        f"UPDATE reservations SET state = ?, updated_ns = ?, reason = ?, expires_ns = ?, "
        f"allocation_id = ?, ports = ?, port_request = ? "
        f"WHERE {key} = ? AND state = ? RETURNING {_COLUMNS}",
        (
            target.value,
            now_ns,
            reason,
            expires_ns,
            allocation_id or current.allocation_id,
            _encode(current.ports if ports is None else ports),
            _encode(current.port_request if port_request is None else port_request),
            value,
            current.state.value,
        ),
    ).fetchone()
    if row is None:  # pragma: no cover - the caller read the row in this same transaction
        raise StoreError(f"reservation {current.ident!r} changed under a transaction")
    return _reservation(row)


def hold(
    conn: sqlite3.Connection, bid_id: str, requested: Resources, ttl_ns: int, now_ns: int
) -> Reservation:
    """Hold ``requested`` for a bid until ``now + ttl``."""
    expire_due(conn, now_ns)
    existing = by_bid(conn, bid_id)
    if existing is not None:
        if not _same(existing.requested, requested):
            raise ReservationConflict(
                "bid",
                bid_id,
                f"held {existing.requested.describe()}, now asked {requested.describe()}",
            )
        if existing.state.live:
            return existing
        raise ReservationClosed("bid", bid_id, existing.state, existing.reason)
    _check_ttl(ttl_ns)
    _check_requested(requested)
    taken = _take(conn, requested, f"hold resources for bid {bid_id}")
    return _insert(
        conn,
        bid_id=bid_id,
        allocation_id=None,
        state=ReservationState.HELD,
        requested=requested,
        taken=taken,
        ports=(),
        port_request=PortRequest(),
        expires_ns=now_ns + ttl_ns,
        now_ns=now_ns,
    )


def commit(
    conn: sqlite3.Connection,
    allocation_id: str,
    *,
    ttl_ns: int,
    now_ns: int,
    bid_id: str | None = None,
    requested: Resources | None = None,
    port_request: PortRequest = NO_PORTS,
    port_range: PortRange = DEFAULT_PORT_RANGE,
    probe: PortProbe = can_bind,
) -> Reservation:
    """Commit resources to an allocation until ``now + ttl``: a bid's hold, or fresh ones.

    With ``bid_id`` the bid's hold becomes the allocation's commitment; if the hold has already
    expired, the same amounts are reserved anew when they are still free.
    """
    if bid_id is None and requested is None:
        raise ReservationError(f"commit {allocation_id!r}: give a bid id or the resources")
    expire_due(conn, now_ns)
    existing = by_allocation(conn, allocation_id)
    if existing is not None:
        _check_repeat(existing, bid_id, requested, port_request)
        if existing.state in (ReservationState.COMMITTED, ReservationState.ALLOCATED):
            return existing
        raise ReservationClosed("allocation", allocation_id, existing.state, existing.reason)
    _check_ttl(ttl_ns)
    expires = now_ns + ttl_ns
    reason = ""
    if bid_id is not None:
        held = by_bid(conn, bid_id)
        if held is None:
            raise ReservationNotFound("bid", bid_id)
        if requested is not None and not _same(held.requested, requested):
            raise ReservationConflict(
                "bid",
                bid_id,
                f"held {held.requested.describe()}, commit asks {requested.describe()}",
            )
        if held.state is ReservationState.HELD:
            ports = port_table.reserve(conn, allocation_id, port_request, port_range, probe)
            return _move(
                conn,
                held,
                ReservationState.COMMITTED,
                now_ns,
                allocation_id=allocation_id,
                expires_ns=expires,
                ports=ports,
                port_request=port_request,
            )
        if held.state.live:
            raise ReservationConflict(
                "bid", bid_id, f"already committed to allocation {held.allocation_id}"
            )
        if held.state is not ReservationState.EXPIRED:
            raise ReservationClosed("bid", bid_id, held.state, held.reason)
        requested = held.requested
        reason = "the bid's hold had expired; reserved anew"
    assert requested is not None
    _check_requested(requested)
    taken = _take(conn, requested, f"commit allocation {allocation_id}")
    ports = port_table.reserve(conn, allocation_id, port_request, port_range, probe)
    return _insert(
        conn,
        bid_id=bid_id,
        allocation_id=allocation_id,
        state=ReservationState.COMMITTED,
        requested=requested,
        taken=taken,
        ports=ports,
        port_request=port_request,
        expires_ns=expires,
        now_ns=now_ns,
        reason=reason,
    )


def _check_repeat(
    existing: Reservation,
    bid_id: str | None,
    requested: Resources | None,
    port_request: PortRequest,
) -> None:
    ident = existing.allocation_id or ""
    if bid_id is not None and existing.bid_id != bid_id:
        raise ReservationConflict(
            "allocation", ident, f"committed from bid {existing.bid_id}, now bid {bid_id}"
        )
    if requested is not None and not _same(existing.requested, requested):
        raise ReservationConflict(
            "allocation",
            ident,
            f"committed {existing.requested.describe()}, now asked {requested.describe()}",
        )
    if existing.port_request != port_request:
        raise ReservationConflict(
            "allocation",
            ident,
            f"committed with ports {existing.port_request}, now {port_request}",
        )


def _require(conn: sqlite3.Connection, allocation_id: str) -> Reservation:
    found = by_allocation(conn, allocation_id)
    if found is None:
        raise ReservationNotFound("allocation", allocation_id)
    return found


def allocate(conn: sqlite3.Connection, allocation_id: str, now_ns: int) -> Reservation:
    """A committed allocation starts running: its resources stay taken until released."""
    expire_due(conn, now_ns)
    current = _require(conn, allocation_id)
    if current.state is ReservationState.ALLOCATED:
        return current
    if not current.state.live:
        raise ReservationClosed("allocation", allocation_id, current.state, current.reason)
    _, draining = read_pool(conn)
    if draining:
        raise Draining(f"allocate {allocation_id}")
    return _move(conn, current, ReservationState.ALLOCATED, now_ns, expires_ns=None)


def release(
    conn: sqlite3.Connection, allocation_id: str, now_ns: int, reason: str = "released"
) -> Reservation:
    """Give an allocation's resources and ports back. Releasing an ended one returns it."""
    expire_due(conn, now_ns)
    current = _require(conn, allocation_id)
    if not current.state.live:
        return current
    return _move(conn, current, ReservationState.RELEASED, now_ns, reason)


def release_bid(
    conn: sqlite3.Connection, bid_id: str, now_ns: int, reason: str = "bid not taken"
) -> Reservation:
    """Drop a bid's hold (the orchestrator chose others). A committed bid is released by its
    allocation id instead."""
    expire_due(conn, now_ns)
    current = by_bid(conn, bid_id)
    if current is None:
        raise ReservationNotFound("bid", bid_id)
    if current.state is ReservationState.HELD:
        return _move(conn, current, ReservationState.RELEASED, now_ns, reason)
    if current.state.live:
        raise InvalidTransition(
            bid_id,
            current.state,
            ReservationState.RELEASED,
            f"release allocation {current.allocation_id} instead",
        )
    return current


def fail(conn: sqlite3.Connection, allocation_id: str, now_ns: int, reason: str) -> Reservation:
    """An allocation whose execution vanished: mark it FAILED and give its resources back."""
    current = _require(conn, allocation_id)
    if current.state is ReservationState.FAILED:
        return current
    return _move(conn, current, ReservationState.FAILED, now_ns, reason)


def prune(conn: sqlite3.Connection, before_ns: int) -> int:
    """Forget ended reservations last changed before ``before_ns``; returns how many."""
    cursor = conn.execute(
        f"DELETE FROM reservations WHERE state NOT IN {_LIVE} AND updated_ns < ?", (before_ns,)
    )
    return cursor.rowcount
