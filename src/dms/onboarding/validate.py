"""Validation of an onboarding request against the machine and what is free on it now.

=========  ==================================================================================
dimension  allowed
=========  ==================================================================================
cpu        1 to the machine's logical CPUs (fractions allowed), at most the cores idle now
ram        10% to 90% of the machine's RAM, at most what is available now
disk       more than 0, at most the free space on the work dir's file system
gpus[i]    an existing index, each once; VRAM 10% to 90% of that device's, at most its free VRAM
price      an amount of at least 0; a currency of letters, digits, ``_`` or ``-``
=========  ==================================================================================

When the node is already onboarded (re-onboarding), what its own reservations hold now counts
as available: the machine's "free now" does not include what this node has lent out itself.
Every problem is reported at once, each naming the dimension, the value asked and the range.
"""

from __future__ import annotations

import math
import re

import msgspec

from dms.onboarding.errors import InvalidOnboarding, Problem
from dms.onboarding.records import OnboardRequest
from dms.resources.hardware import HardwareSpec, HardwareUsage
from dms.types import CPU, GPU, Resources
from dms.types.units import format_price, human_size

MIN_SHARE = 0.10
MAX_SHARE = 0.90
_CURRENCY = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,15}$")


def _range(low: str, high: str, why: str) -> str:
    return f"{low} to {high} ({why})"


def _check_cpu(cores: float, spec: HardwareSpec, free_now: float) -> Problem | None:
    threads = spec.cpu.threads
    high = min(float(threads), free_now)
    if 1 <= cores <= high + 1e-6 and math.isfinite(cores):
        return None
    why = f"the machine has {threads}; {free_now:g} idle now"
    if high < 1:
        return Problem("cpu", f"{cores:g} cores", f"nothing now: at least 1 core, but {why}")
    return Problem("cpu", f"{cores:g} cores", _range("1", f"{high:g} cores", why))


def _check_share(
    field: str, asked: int, total: int, available: int, what: str, available_word: str
) -> Problem | None:
    low = math.ceil(total * MIN_SHARE)
    high = min(math.floor(total * MAX_SHARE), available)
    if low <= asked <= high:
        return None
    why = (
        f"10% to 90% of {human_size(total)} {what}, "
        f"and at most the {human_size(available)} {available_word}"
    )
    if high < low:
        return Problem(field, human_size(asked), f"nothing now: {why}")
    return Problem(field, human_size(asked), _range(human_size(low), human_size(high), why))


def _reserved_vram(reserved: Resources, device: GPU) -> int:
    return sum(g.vram for g in reserved.gpus if g.identity == device.identity)


def validate(
    request: OnboardRequest,
    spec: HardwareSpec,
    usage: HardwareUsage,
    *,
    reserved: Resources | None = None,
) -> Resources:
    """The onboarded Resources for ``request``, or InvalidOnboarding listing every problem.

    ``reserved``: what this node's own reservations hold now (re-onboarding).
    """
    reserved = reserved or Resources()
    free = usage.free(spec)
    problems: list[Problem | None] = []

    cpu_free = min(float(spec.cpu.threads), free.cpu.cores + reserved.cpu.cores)
    problems.append(_check_cpu(request.cpu, spec, cpu_free))
    problems.append(
        _check_share("ram", request.ram, spec.ram, free.ram + reserved.ram, "RAM", "available now")
    )
    disk_free = free.disk + reserved.disk
    if not 0 < request.disk <= disk_free:
        problems.append(
            Problem(
                "disk",
                human_size(request.disk),
                _range(
                    "1B",
                    human_size(disk_free),
                    f"the free space on {spec.disk_path or 'the work dir'}",
                ),
            )
        )

    gpus: list[GPU] = []
    seen: set[int] = set()
    free_by_index = {g.index: g for g in free.gpus}
    for position, share in enumerate(request.gpus):
        field = f"gpus[{position}]"
        device = spec.gpu(share.index)
        if device is None:
            known = ", ".join(str(g.index) for g in spec.gpus) or "none (no GPU detected)"
            problems.append(Problem(f"{field}.index", str(share.index), f"one of: {known}"))
            continue
        if share.index in seen:
            problems.append(Problem(f"{field}.index", str(share.index), "each GPU index once"))
            continue
        seen.add(share.index)
        device_free = free_by_index[share.index].vram + _reserved_vram(reserved, device)
        problem = _check_share(
            f"{field}.vram",
            share.vram,
            device.vram,
            min(device.vram, device_free),
            f"VRAM on GPU {share.index} ({device.model or device.vendor})",
            "free on it now",
        )
        if problem is not None:
            problems.append(problem)
        gpus.append(msgspec.structs.replace(device, vram=share.vram))

    if request.price_per_hour < 0:
        problems.append(
            Problem("price", format_price(request.price_per_hour), "an amount of at least 0")
        )
    if request.currency and not _CURRENCY.match(request.currency):
        problems.append(
            Problem(
                "currency",
                request.currency,
                "a code of up to 16 letters, digits, _ or - starting with a letter",
            )
        )

    found = [p for p in problems if p is not None]
    if found:
        raise InvalidOnboarding(found)
    return Resources(
        cpu=CPU(
            cores=request.cpu,
            clock_hz=spec.cpu.clock_hz,
            architecture=spec.cpu.architecture,
            model=spec.cpu.model,
        ),
        ram=request.ram,
        disk=request.disk,
        gpus=tuple(gpus),
    )
