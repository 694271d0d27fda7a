"""What an owner asks to onboard, what is stored, and what status reports."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from dms.errors import InputError
from dms.resources.hardware import HardwareSpec
from dms.resources.records import Pools
from dms.types import Location, Resources
from dms.types.units import parse_cores, parse_price, parse_size

GPU_SHARE_EXAMPLES = "INDEX:VRAM (e.g. 0:8GiB), or none"


class GPUShare(msgspec.Struct, frozen=True):
    """VRAM offered on the GPU with this index (see ``dms resources``: machine GPUs)."""

    index: int
    vram: int
    """Bytes."""

    @classmethod
    def parse(cls, text: str, field: str = "gpu") -> GPUShare:
        index, sep, vram = text.partition(":")
        if not sep or not index.strip().isdigit():
            raise InputError(field, text, GPU_SHARE_EXAMPLES)
        return cls(int(index), parse_size(vram.strip(), f"{field}.vram"))


class OnboardRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A share of this machine to offer. Sizes in bytes, price in micro-units per hour."""

    cpu: float
    ram: int
    disk: int
    gpus: tuple[GPUShare, ...] = ()
    price_per_hour: int = 0
    currency: str = ""
    location: Location = Location()

    @classmethod
    def parse(
        cls,
        *,
        cpu: str | float,
        ram: str | int,
        disk: str | int,
        gpus: Iterable[str] = (),
        price: str = "",
        location: str = "",
    ) -> OnboardRequest:
        """From command-line text: ``cpu="2" ram="4GiB" disk="20GiB" gpus=["0:8GiB"]``,
        ``price="0.5NTX"``, ``location="EU/DE/Berlin"``. ``gpus=["none"]`` offers no GPU."""
        shares = [g for g in gpus if g.strip().lower() != "none"]
        micro, currency = parse_price(price, "price") if price else (0, "")
        return cls(
            cpu=parse_cores(cpu, "cpu"),
            ram=parse_size(ram, "ram"),
            disk=parse_size(disk, "disk"),
            gpus=tuple(GPUShare.parse(g, f"gpus[{i}]") for i, g in enumerate(shares)),
            price_per_hour=micro,
            currency=currency,
            location=Location.parse(location) if location else Location(),
        )


class OnboardingRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What is stored while onboarded: the request, and the resources it became."""

    request: OnboardRequest
    resources: Resources
    """The onboarded resources: CPU with the machine's clock and architecture, GPUs as devices."""
    onboarded_ns: int
    updated_ns: int


class ResourcesView(msgspec.Struct, frozen=True, kw_only=True):
    """machine, onboarded, held, committed, allocated and free, side by side."""

    machine: Resources
    onboarded: Resources
    held: Resources
    committed: Resources
    allocated: Resources
    free: Resources

    @classmethod
    def of(cls, spec: HardwareSpec, pools: Pools) -> ResourcesView:
        return cls(
            machine=spec.resources(),
            onboarded=pools.onboarded,
            held=pools.held,
            committed=pools.committed,
            allocated=pools.allocated,
            free=pools.free,
        )


class OnboardStatus(msgspec.Struct, frozen=True, kw_only=True):
    onboarded: bool
    draining: bool = False
    """An offboard is stopping allocations; nothing new is reserved."""
    record: OnboardingRecord | None = None
    resources: ResourcesView


class OffboardResult(msgspec.Struct, frozen=True, kw_only=True):
    offboarded: bool
    stopped: tuple[str, ...] = ()
    """Allocations stopped first (force)."""
    released: tuple[str, ...] = ()
    """Reservations released (allocation or bid ids)."""
    problems: tuple[str, ...] = ()
    """Allocations that could not be stopped cleanly (their resources were released anyway)."""
