"""Ports reserved per allocation from a configured range.

The ``ports`` table's primary key is the port, so two allocations can never hold one port, in
any number of connections or processes. Dynamic ports are the lowest free ones in the range that
the probe also finds free on this machine (another program, or another dms node with its own
home, may be listening there). Functions here take the connection of the caller's transaction.
"""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Callable

import msgspec

from dms.resources.errors import PortsUnavailable
from dms.resources.records import PortRequest

PortProbe = Callable[[int], bool]
"""Returns whether a port can be bound on this machine right now."""


class PortRange(msgspec.Struct, frozen=True):
    start: int = 16384
    end: int = 65535
    """Inclusive."""

    def __post_init__(self) -> None:
        if not 1 <= self.start <= self.end <= 65535:
            raise ValueError(
                f"port range {self.start}-{self.end}: expected 1 <= start <= end <= 65535"
            )

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.start <= port <= self.end

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    def describe(self) -> str:
        return f"{self.start}-{self.end}"


def can_bind(port: int) -> bool:
    """Whether a TCP socket can bind this port on all interfaces now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def reserve(
    conn: sqlite3.Connection,
    allocation_id: str,
    request: PortRequest,
    ports: PortRange,
    probe: PortProbe = can_bind,
) -> tuple[int, ...]:
    """Reserve ``request`` for ``allocation_id`` (fixed ones first) and return the ports."""
    if request.dynamic < 0:
        raise PortsUnavailable("ports.dynamic", request.dynamic, "expected 0 or more")
    if len(set(request.fixed)) != len(request.fixed):
        raise PortsUnavailable("ports.fixed", list(request.fixed), "each port may appear once")
    taken = dict(conn.execute("SELECT port, allocation_id FROM ports").fetchall())
    for port in request.fixed:
        if port not in ports:
            raise PortsUnavailable(
                "ports.fixed", port, f"expected a port in the range {ports.describe()}"
            )
        if port in taken and taken[port] != allocation_id:
            raise PortsUnavailable(
                "ports.fixed", port, f"it is reserved by allocation {taken[port]}"
            )
    chosen = list(request.fixed)
    if request.dynamic:
        skip = set(taken) | set(request.fixed)
        for port in range(ports.start, ports.end + 1):
            if len(chosen) == request.count:
                break
            if port not in skip and probe(port):
                chosen.append(port)
        if len(chosen) < request.count:
            raise PortsUnavailable(
                "ports.dynamic",
                request.dynamic,
                f"only {len(chosen) - len(request.fixed)} free in {ports.describe()}",
            )
    conn.executemany(
        "INSERT OR IGNORE INTO ports (port, allocation_id) VALUES (?, ?)",
        [(port, allocation_id) for port in chosen],
    )
    return tuple(sorted(chosen))


def release(conn: sqlite3.Connection, allocation_id: str) -> tuple[int, ...]:
    rows = conn.execute(
        "DELETE FROM ports WHERE allocation_id = ? RETURNING port", (allocation_id,)
    ).fetchall()
    return tuple(sorted(int(r[0]) for r in rows))


def reserved(conn: sqlite3.Connection) -> dict[int, str]:
    """Every reserved port and its allocation."""
    return {int(p): str(a) for p, a in conn.execute("SELECT port, allocation_id FROM ports")}
