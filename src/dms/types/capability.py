"""The seed's ``Capability`` and its parts: Connectivity, PriceInformation, TimeInformation.

A Capability describes either what a machine offers or what a job requires:

* ``add`` combines the requirements of two jobs that are to run on one machine;
* ``subtract`` reduces a machine's available capability when resources are locked for a job;
* ``satisfies`` checks a machine against a requirement and returns a :class:`Verdict` with one
  :class:`Check` per dimension and the reason for each failure.

Per-dimension semantics, machine (M) against requirement (R):

============  ==========================================  ====================================
dimension     R is satisfied when                          add (R1 + R2)
============  ==========================================  ====================================
executors     every R executor is offered by M             union
job_types     every R job type is supported by M           union
resources     M's resources cover R's (exact fit fits)     sum (GPUs side by side)
libraries     R's libraries are a subset of M's            union
locality      R empty, or R and M share a locality         intersection (empty: conflict)
storage       R's storage kinds are a subset of M's        union
connectivity  R's ports are open on M; VPN if R asks       port union (clash: conflict); VPN or
price         same currency; M's ask <= R's max per hour;  sum of per-hour and budgets
              budget covers ask x max time
time          R's max time <= M's availability (0 = any)   the longer max time
kyc           R's KYC kinds are a subset of M's            union
============  ==========================================  ====================================
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from typing import TypeVar

import msgspec

from dms.errors import IncompatibleRequirements, InsufficientResources
from dms.types.jobs import ExecutorType, JobType
from dms.types.resources import Resources
from dms.types.units import format_duration, format_price

T = TypeVar("T")


def _union(a: Iterable[T], b: Iterable[T]) -> tuple[T, ...]:
    return tuple(dict.fromkeys((*a, *b)))


class Connectivity(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    ports: tuple[int, ...] = ()
    """Ports that must be open for the job (requirement) or can be opened (machine; a machine
    listing none can open any, from its configured range)."""
    vpn: bool = False
    """Whether a VPN is required (requirement) or available (machine)."""


class PriceInformation(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Prices are integers of micro-units (see :mod:`dms.types.units`)."""

    currency: str = ""
    """e.g. ``NTX``; ``""`` = unspecified."""
    currency_per_hour: int = 0
    """Machine: the asking price per hour. Requirement: the most it will pay per hour (0 = any)."""
    total_per_job: int = 0
    """Requirement: the total budget of the job (0 = no budget set)."""
    preference: int = 0
    """How much price matters compared to time (0-100, higher = cheaper is better)."""

    def describe(self) -> str:
        return f"{format_price(self.currency_per_hour, self.currency)}/h"


class TimeUnit(enum.StrEnum):
    SECONDS = "seconds"
    MINUTES = "minutes"
    HOURS = "hours"
    DAYS = "days"
    WEEKS = "weeks"

    @property
    def ns(self) -> int:
        return _TIME_UNIT_NS[self]


_TIME_UNIT_NS = {
    TimeUnit.SECONDS: 10**9,
    TimeUnit.MINUTES: 60 * 10**9,
    TimeUnit.HOURS: 3600 * 10**9,
    TimeUnit.DAYS: 86400 * 10**9,
    TimeUnit.WEEKS: 7 * 86400 * 10**9,
}


class TimeInformation(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    units: TimeUnit = TimeUnit.HOURS
    max_time: int = 0
    """Requirement: the longest the job may run (0 = not stated).
    Machine: how long it is available (0 = unbounded)."""
    preference: int = 0
    """How much time matters compared to price (0-100, higher = faster is better)."""

    @property
    def max_time_ns(self) -> int:
        return self.max_time * self.units.ns

    def describe(self) -> str:
        return format_duration(self.max_time_ns) if self.max_time else "unbounded"


class Check(msgspec.Struct, frozen=True):
    """One dimension of a :class:`Verdict`."""

    dimension: str
    ok: bool
    reason: str = ""


class Verdict(msgspec.Struct, frozen=True):
    """The outcome of :meth:`Capability.satisfies`: a check per dimension."""

    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def __bool__(self) -> bool:
        return self.ok

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.ok)

    def check(self, dimension: str) -> Check:
        for c in self.checks:
            if c.dimension == dimension:
                return c
        raise KeyError(dimension)

    def explain(self) -> str:
        if self.ok:
            return "fits"
        return "; ".join(f"{c.dimension}: {c.reason}" for c in self.failures)


DIMENSIONS = (
    "executors",
    "job_types",
    "resources",
    "libraries",
    "locality",
    "storage",
    "connectivity",
    "price",
    "time",
    "kyc",
)


class Capability(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a machine can do, or what a job needs from one (the seed's ``dms.Capability``)."""

    executors: tuple[ExecutorType, ...] = ()
    job_types: tuple[JobType, ...] = ()
    resources: Resources = Resources()
    libraries: tuple[str, ...] = ()
    locality: tuple[str, ...] = ()
    storage: tuple[str, ...] = ()
    connectivity: Connectivity = Connectivity()
    price: PriceInformation = PriceInformation()
    time: TimeInformation = TimeInformation()
    kyc: tuple[str, ...] = ()

    def add(self, other: Capability) -> Capability:
        """Combine the requirements of two jobs that will share one machine."""
        return Capability(
            executors=_union(self.executors, other.executors),
            job_types=_union(self.job_types, other.job_types),
            resources=self.resources.add(other.resources),
            libraries=_union(self.libraries, other.libraries),
            locality=_combine_locality(self.locality, other.locality),
            storage=_union(self.storage, other.storage),
            connectivity=_combine_connectivity(self.connectivity, other.connectivity),
            price=_combine_price(self.price, other.price),
            time=_combine_time(self.time, other.time),
            kyc=_union(self.kyc, other.kyc),
        )

    def subtract(self, locked: Capability) -> Capability:
        """A machine's capability once ``locked`` (a job's requirement) is taken from it.

        Resources and the job's ports are taken; what the machine is (executors, libraries,
        locality, storage, price, time, KYC) is unchanged. Raises InsufficientResources.
        """
        taken = set(locked.connectivity.ports)
        missing = sorted(taken - set(self.connectivity.ports)) if self.connectivity.ports else []
        if missing:
            raise InsufficientResources(
                "connectivity.ports",
                ", ".join(map(str, missing)),
                ", ".join(map(str, self.connectivity.ports)) or "none",
            )
        return msgspec.structs.replace(
            self,
            resources=self.resources.subtract(locked.resources),
            connectivity=msgspec.structs.replace(
                self.connectivity,
                ports=tuple(p for p in self.connectivity.ports if p not in taken),
            ),
        )

    def satisfies(self, requirement: Capability) -> Verdict:
        """Check this (machine) capability against a requirement, dimension by dimension."""
        return Verdict(tuple(_CHECKERS[d](self, requirement) for d in DIMENSIONS))

    def check(self, dimension: str, requirement: Capability) -> Check:
        """One dimension of :meth:`satisfies` (a matcher that filters on one concern at a
        time need not check the other nine). Raises KeyError for an unknown dimension."""
        return _CHECKERS[dimension](self, requirement)


# -- add helpers ------------------------------------------------------------------------------


def _combine_locality(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    if not a or not b:
        return a or b
    both = tuple(x for x in a if x in b)
    if not both:
        raise IncompatibleRequirements("locality", a, b)
    return both


def _combine_connectivity(a: Connectivity, b: Connectivity) -> Connectivity:
    clash = sorted(set(a.ports) & set(b.ports))
    if clash:
        raise IncompatibleRequirements("connectivity.ports", clash, clash)
    return Connectivity(ports=(*a.ports, *b.ports), vpn=a.vpn or b.vpn)


def _combine_price(a: PriceInformation, b: PriceInformation) -> PriceInformation:
    if a.currency and b.currency and a.currency != b.currency:
        raise IncompatibleRequirements("price.currency", a.currency, b.currency)
    return PriceInformation(
        currency=a.currency or b.currency,
        currency_per_hour=a.currency_per_hour + b.currency_per_hour,
        total_per_job=a.total_per_job + b.total_per_job,
        preference=max(a.preference, b.preference),
    )


def _combine_time(a: TimeInformation, b: TimeInformation) -> TimeInformation:
    unit = min(a.units, b.units, key=lambda u: u.ns)
    longest = max(a.max_time_ns, b.max_time_ns)
    return TimeInformation(
        units=unit, max_time=-(-longest // unit.ns), preference=max(a.preference, b.preference)
    )


# -- satisfies checkers: one per dimension ------------------------------------------------------


def _subset(dimension: str, offered: Iterable[str], needed: Iterable[str]) -> Check:
    have = set(offered)
    missing = [x for x in needed if x not in have]
    if missing:
        return Check(
            dimension,
            False,
            f"requires {', '.join(map(str, missing))}; offers {', '.join(map(str, have)) or 'none'}",
        )
    return Check(dimension, True)


def _check_resources(m: Capability, r: Capability) -> Check:
    short = m.resources.shortfall(r.resources)
    return Check("resources", short is None, str(short) if short else "")


def _check_locality(m: Capability, r: Capability) -> Check:
    if not r.locality or set(r.locality) & set(m.locality):
        return Check("locality", True)
    return Check(
        "locality",
        False,
        f"accepts {', '.join(r.locality)}; machine is in {', '.join(m.locality) or 'an unknown place'}",
    )


def _check_connectivity(m: Capability, r: Capability) -> Check:
    # A machine that lists no ports opens any (its ResourceManager reserves them from a range).
    missing = (
        sorted(set(r.connectivity.ports) - set(m.connectivity.ports))
        if m.connectivity.ports
        else []
    )
    if missing:
        return Check("connectivity", False, f"ports {missing} not available")
    if r.connectivity.vpn and not m.connectivity.vpn:
        return Check("connectivity", False, "requires a VPN; none available")
    return Check("connectivity", True)


def _check_price(m: Capability, r: Capability) -> Check:
    mp, rp = m.price, r.price
    if mp.currency and rp.currency and mp.currency != rp.currency:
        return Check("price", False, f"priced in {mp.currency}; requirement pays in {rp.currency}")
    if rp.currency_per_hour and mp.currency_per_hour > rp.currency_per_hour:
        return Check(
            "price", False, f"asks {mp.describe()}; requirement pays at most {rp.describe()}"
        )
    hours = r.time.max_time_ns / TimeUnit.HOURS.ns
    if rp.total_per_job and r.time.max_time and mp.currency_per_hour * hours > rp.total_per_job:
        cost = round(mp.currency_per_hour * hours)
        return Check(
            "price",
            False,
            f"{r.time.describe()} at {mp.describe()} costs {format_price(cost, mp.currency)}; "
            f"budget {format_price(rp.total_per_job, rp.currency)}",
        )
    return Check("price", True)


def _check_time(m: Capability, r: Capability) -> Check:
    # A requirement that states no time, or a machine with no limit, always fits.
    if not m.time.max_time or not r.time.max_time or r.time.max_time_ns <= m.time.max_time_ns:
        return Check("time", True)
    return Check(
        "time",
        False,
        f"requires {r.time.describe()}; machine available for {m.time.describe()}",
    )


_CHECKERS: dict[str, Callable[[Capability, Capability], Check]] = {
    "executors": lambda m, r: _subset("executors", m.executors, r.executors),
    "job_types": lambda m, r: _subset("job_types", m.job_types, r.job_types),
    "resources": _check_resources,
    "libraries": lambda m, r: _subset("libraries", m.libraries, r.libraries),
    "locality": _check_locality,
    "storage": lambda m, r: _subset("storage", m.storage, r.storage),
    "connectivity": _check_connectivity,
    "price": _check_price,
    "time": _check_time,
    "kyc": lambda m, r: _subset("kyc", m.kyc, r.kyc),
}
