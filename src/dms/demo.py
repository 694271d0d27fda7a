"""``make run`` until the node exists: this machine as a provider, matched against example jobs.

Detects the local CPU, RAM and disk, offers half of them as a compute provider would, and shows
for each example requirement the per-dimension verdict of ``Capability.satisfies``.
"""

from __future__ import annotations

import os
import platform

import psutil
from rich.console import Console
from rich.table import Table

from dms.types import (
    CPU,
    GPU,
    Capability,
    ExecutorType,
    GPUVendor,
    JobType,
    Location,
    PriceInformation,
    Resources,
    TimeInformation,
    TimeUnit,
)
from dms.types.units import human_size, parse_size


def offered_capability() -> Capability:
    cores = float(psutil.cpu_count(logical=True) or 1)
    ram = psutil.virtual_memory().total
    disk = psutil.disk_usage(os.getcwd()).free
    return Capability(
        executors=(ExecutorType.WASM, ExecutorType.PROCESS),
        job_types=(JobType.TASK, JobType.BATCH, JobType.SERVICE),
        resources=Resources(
            cpu=CPU(cores=cores / 2, architecture=platform.machine()),
            ram=ram // 2,
            disk=disk // 4,
        ),
        locality=Location(continent="EU", country="DE").tags(),
        price=PriceInformation(currency="NTX", currency_per_hour=500_000),
        time=TimeInformation(units=TimeUnit.DAYS, max_time=30),
    )


EXAMPLES: dict[str, Capability] = {
    "hello (wasm task)": Capability(
        executors=(ExecutorType.WASM,),
        job_types=(JobType.TASK,),
        resources=Resources(cpu=CPU(cores=0.5), ram=parse_size("64MiB")),
    ),
    "web service, EU only": Capability(
        executors=(ExecutorType.PROCESS,),
        job_types=(JobType.SERVICE,),
        resources=Resources(cpu=CPU(cores=1), ram=parse_size("512MiB")),
        locality=("EU",),
        price=PriceInformation(currency="NTX", currency_per_hour=1_000_000),
    ),
    "training on a GPU": Capability(
        executors=(ExecutorType.DOCKER,),
        resources=Resources(
            cpu=CPU(cores=4),
            ram=parse_size("16GiB"),
            gpus=(GPU(vendor=GPUVendor.NVIDIA, vram=parse_size("24GiB")),),
        ),
    ),
    "cheap batch in Asia": Capability(
        job_types=(JobType.BATCH,),
        resources=Resources(cpu=CPU(cores=1), ram=parse_size("1GiB")),
        locality=("AS",),
        price=PriceInformation(currency="NTX", currency_per_hour=100_000),
    ),
}


def main() -> None:
    console = Console()
    machine = offered_capability()
    r = machine.resources
    console.print("[bold]dms[/]: this machine as a compute provider (half of it offered)")
    console.print(
        f"  {r.cpu.describe()}, {human_size(r.ram)} RAM, {human_size(r.disk)} disk, "
        f"executors {', '.join(machine.executors)}, price {machine.price.describe()}"
    )
    table = Table(title="Example jobs matched against this provider")
    table.add_column("job")
    table.add_column("fits")
    table.add_column("why not")
    for name, need in EXAMPLES.items():
        verdict = machine.satisfies(need)
        table.add_row(
            name,
            "[green]yes[/]" if verdict.ok else "[red]no[/]",
            "" if verdict.ok else verdict.explain(),
        )
    console.print(table)
    remaining = machine.subtract(EXAMPLES["hello (wasm task)"]).resources
    console.print(f"After locking the hello job: {remaining.describe()}")


if __name__ == "__main__":
    main()
