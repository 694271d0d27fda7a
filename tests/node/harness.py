"""In-process dms nodes for tests: a real DMS app on the in-memory network, static hardware.

``async with running_node(tmp_path) as node:`` starts the whole app (store, sanity check, actor
system, Node root actor, REST API on a free port) without libp2p; several nodes share one
``Fabric``. Homes are set up by ``dms.node.setup.init_home`` with unprotected keys.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from dms import config as cfg
from dms.app import DMS
from dms.executor.null import NullExecutor
from dms.executor.registry import ExecutorRegistry
from dms.home import Home
from dms.network.memory import Fabric
from dms.node.identity import peer_id_from_did
from dms.node.setup import init_home, load_key
from dms.resources import CPUInfo, HardwareSpec, StaticHardware, idle_usage

GiB = 1024**3
SPEC = HardwareSpec(
    cpu=CPUInfo(cores=4, threads=8, clock_hz=3_000_000_000, model="EPYC", architecture="x86_64"),
    ram=32 * GiB,
    disk=500 * GiB,
    disk_path="/srv/dms",
)


def make_home(
    root: Path, name: str = "node", *, roots: Sequence[str] = (), **settings: Any
) -> Home:
    home = Home(root / name)
    values: dict[str, Any] = {"api.port": 0, "network.listen": ["/ip4/127.0.0.1/tcp/0"]}
    values.update({key.replace("__", "."): value for key, value in settings.items()})
    init_home(home, passphrase=None, settings=values, extra_roots=tuple(roots))
    return home


@asynccontextmanager
async def running_node(
    root: Path,
    fabric: Fabric | None = None,
    *,
    name: str = "node",
    home: Home | None = None,
    api: bool = True,
    provider: bool = False,
    orchestrator: bool = False,
    roots: Sequence[str] = (),
) -> AsyncIterator[DMS]:
    home = home or make_home(root, name, roots=roots)
    keypair = load_key(home)
    fabric = fabric or Fabric()
    network = fabric.network(peer_id_from_did(keypair.did))
    executors = ExecutorRegistry([NullExecutor(home.work_dir / "null")])
    node = DMS(
        home,
        cfg.load(home.config_file, env={}),
        keypair,
        network=network,
        hardware=StaticHardware(SPEC, idle_usage(SPEC)),
        executors=executors,
        api=api,
        provider=provider,
        orchestrator=orchestrator,
    )
    async with node:
        yield node
