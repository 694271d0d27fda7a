"""Simulated machines: what each provider has, onboards, asks and where it is.

:func:`provider_profiles` draws a seeded, mixed population: most providers are CPU machines of
a few sizes, some have GPUs, all are spread over a handful of places and ask different prices.
The same seed always gives the same population.
"""

from __future__ import annotations

import random

import msgspec

from dms.onboarding import GPUShare, OnboardRequest
from dms.resources import CPUInfo, HardwareSpec
from dms.sim.errors import InvalidSimulation
from dms.types import GPU, GPUVendor, Location

GiB = 1024**3
CURRENCY = "NTX"

PLACES: tuple[Location, ...] = (
    Location(continent="EU", country="DE", city="Berlin"),
    Location(continent="EU", country="FR", city="Paris"),
    Location(continent="EU", country="FI", city="Helsinki"),
    Location(continent="NA", country="US", city="Austin"),
    Location(continent="NA", country="CA", city="Montreal"),
    Location(continent="AS", country="JP", city="Tokyo"),
    Location(continent="AS", country="SG", city="Singapore"),
)
"""Where simulated providers are (continent, country, city)."""

GPU_MODELS: tuple[tuple[str, int], ...] = (("RTX 4090", 24 * GiB), ("A100", 80 * GiB))


class ProviderProfile(msgspec.Struct, frozen=True, kw_only=True):
    """One simulated machine and the share of it its owner onboards."""

    name: str
    cores: int
    """Logical CPUs of the machine; all of them are onboarded."""
    ram: int
    """Bytes of RAM of the machine; 80% is onboarded."""
    disk: int = 500 * GiB
    gpus: tuple[GPU, ...] = ()
    """Each GPU's whole VRAM; 80% of each is onboarded."""
    price_per_hour: int = 1_000_000
    """Micro-NTX per hour."""
    location: Location = Location()

    def hardware(self) -> HardwareSpec:
        return HardwareSpec(
            cpu=CPUInfo(
                cores=self.cores,
                threads=self.cores,
                clock_hz=3_000_000_000,
                model="sim",
                architecture="x86_64",
            ),
            ram=self.ram,
            disk=self.disk,
            disk_path="/sim",
            gpus=self.gpus,
        )

    def onboard_request(self) -> OnboardRequest:
        return OnboardRequest(
            cpu=float(self.cores),
            ram=self.ram * 8 // 10,
            disk=self.disk * 8 // 10,
            gpus=tuple(GPUShare(g.index, g.vram * 8 // 10) for g in self.gpus),
            price_per_hour=self.price_per_hour,
            currency=CURRENCY,
            location=self.location,
        )


def provider_profiles(
    count: int, *, seed: int = 0, gpu_share: float = 0.1
) -> list[ProviderProfile]:
    """``count`` machines: 8, 16 or 32 cores with 4 GiB of RAM per core; ``gpu_share`` of
    them with one or two GPUs; prices from 0.2 to 3 NTX per hour; places from :data:`PLACES`
    in turn (every place has providers as soon as there are as many providers as places)."""
    if count < 0:
        raise InvalidSimulation("providers", count, "a count of 0 or more")
    if not 0.0 <= gpu_share <= 1.0:
        raise InvalidSimulation("gpu_share", gpu_share, "a fraction from 0 to 1")
    rng = random.Random(seed)
    out: list[ProviderProfile] = []
    for i in range(count):
        cores = rng.choice((8, 16, 16, 32))
        gpus: tuple[GPU, ...] = ()
        if rng.random() < gpu_share:
            model, vram = rng.choice(GPU_MODELS)
            gpus = tuple(
                GPU(index=k, vendor=GPUVendor.NVIDIA, model=model, vram=vram, uuid=f"GPU-{i}-{k}")
                for k in range(rng.choice((1, 2)))
            )
        out.append(
            ProviderProfile(
                name=f"p{i}",
                cores=cores,
                ram=cores * 4 * GiB,
                gpus=gpus,
                price_per_hour=rng.randrange(200_000, 3_000_001, 100_000),
                location=PLACES[i % len(PLACES)],
            )
        )
    return out
