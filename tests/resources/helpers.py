"""A synchronous driver over the ledger (one transaction per call), for tests and threads."""

from __future__ import annotations

from pathlib import Path

from dms.clock import ManualClock
from dms.resources import ledger
from dms.resources.ports import PortRange
from dms.resources.records import Pools, PortRequest, Reservation
from dms.store import Database
from dms.types import CPU, GPU, GPUVendor, Resources

GiB = 1024**3
SECOND = 10**9
TEST_PORTS = PortRange(20000, 20099)
NO_PORTS = PortRequest()


def gpu(
    index: int, vram_gib: int, vendor: GPUVendor = GPUVendor.NVIDIA, model: str = "A100"
) -> GPU:
    return GPU(index=index, vendor=vendor, model=model, vram=vram_gib * GiB, uuid=f"GPU-{index}")


def machine(
    cores: float = 8, ram_gib: int = 32, disk_gib: int = 100, gpus: tuple[GPU, ...] = ()
) -> Resources:
    return Resources(
        cpu=CPU(cores=cores, clock_hz=2_500_000_000, architecture="x86_64"),
        ram=ram_gib * GiB,
        disk=disk_gib * GiB,
        gpus=gpus,
    )


def need(
    cores: float = 1, ram_gib: float = 1, disk_gib: float = 1, gpus: tuple[GPU, ...] = ()
) -> Resources:
    return Resources(
        cpu=CPU(cores=cores), ram=int(ram_gib * GiB), disk=int(disk_gib * GiB), gpus=gpus
    )


def always_free(port: int) -> bool:
    return True


class SyncLedger:
    """Each method is one write transaction on ``db`` at the clock's time."""

    def __init__(
        self,
        db: Database,
        clock: ManualClock | None = None,
        ports: PortRange = TEST_PORTS,
    ) -> None:
        self.db = db
        self.clock = clock or ManualClock()
        self.ports = ports

    @classmethod
    def open(cls, path: Path, clock: ManualClock | None = None) -> SyncLedger:
        return cls(Database(path), clock)

    @property
    def now(self) -> int:
        return self.clock.now_ns()

    def onboard(self, resources: Resources) -> None:
        self.db.transact_sync(lambda c: ledger.set_onboarded(c, resources, self.now))

    def offboard(self, force: bool = False) -> list[Reservation]:
        return self.db.transact_sync(lambda c: ledger.clear_onboarded(c, self.now, force=force))

    def hold(self, bid: str, resources: Resources, ttl_s: float = 30) -> Reservation:
        ttl = int(ttl_s * SECOND)
        return self.db.transact_sync(lambda c: ledger.hold(c, bid, resources, ttl, self.now))

    def commit(
        self,
        allocation: str,
        *,
        bid: str | None = None,
        resources: Resources | None = None,
        ttl_s: float = 30,
        ports: PortRequest = NO_PORTS,
    ) -> Reservation:
        return self.db.transact_sync(
            lambda c: ledger.commit(
                c,
                allocation,
                ttl_ns=int(ttl_s * SECOND),
                now_ns=self.now,
                bid_id=bid,
                requested=resources,
                port_request=ports,
                port_range=self.ports,
                probe=always_free,
            )
        )

    def allocate(self, allocation: str) -> Reservation:
        return self.db.transact_sync(lambda c: ledger.allocate(c, allocation, self.now))

    def release(self, allocation: str) -> Reservation:
        return self.db.transact_sync(lambda c: ledger.release(c, allocation, self.now))

    def release_bid(self, bid: str) -> Reservation:
        return self.db.transact_sync(lambda c: ledger.release_bid(c, bid, self.now))

    def fail(self, allocation: str, reason: str = "gone") -> Reservation:
        return self.db.transact_sync(lambda c: ledger.fail(c, allocation, self.now, reason))

    def expire(self) -> list[Reservation]:
        return self.db.transact_sync(lambda c: ledger.expire_due(c, self.now))

    def pools(self) -> Pools:
        return self.db.query_sync(lambda c: ledger.pools(c, self.now))

    def violation(self) -> str | None:
        return self.db.query_sync(ledger.invariant_violation)

    def ports_in_use(self) -> dict[int, str]:
        from dms.resources import ports

        return self.db.query_sync(ports.reserved)
