"""A local network of real dms nodes: N ``dms run`` processes on 127.0.0.1, one home each.

``async with Devstack(root, nodes=3) as stack:`` does, in order:

1. ``dms init --no-passphrase`` for each home ``root/node1..N`` (keys sealed under the public
   passphrase: a devstack is for trying things, not for secrets);
2. trust: every node's trust context lists every devstack node and user DID as a root, so each
   node accepts the others' messages (bids, commits, adverts) and each user's tokens;
3. config: libp2p on ``/ip4/127.0.0.1/tcp/<free port>``, the REST API on a free port, node 1 as
   every other node's bootstrap peer;
4. starts every node at once (``python -m dms.cli.main --home H run --json``, logs in
   ``H/logs/node.log``) and waits for each one's ready line;
5. waits until every node is connected to node 1, then onboards every node as a provider with a
   small share (1 core, the least RAM the onboarding rules allow, 1 GiB disk); the nodes share
   one machine, so onboarding does not require their cores to be idle at that moment
   (``resources.require_idle_cpu = false``);

and on leaving stops them all (SIGTERM, then SIGKILL after ``stop_timeout_s``). Each node is
described by a :class:`DevstackNode` (API URL, peer id, address, home, log file).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import anyio
import anyio.abc
import msgspec

from dms.errors import DMSError
from dms.home import Home
from dms.log import get_logger
from dms.node.identity import peer_id_from_did
from dms.node.setup import init_home

START_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 30.0
DEFAULT_STOP_TIMEOUT_S = 15.0
MIN_RAM = 512 * 2**20
ONBOARD_PATIENCE_S = 30.0


class DevstackError(DMSError):
    """A devstack node did not start, connect or onboard."""


class Share(msgspec.Struct, frozen=True, kw_only=True):
    """What each devstack provider onboards ("" for RAM: the least the rules allow)."""

    cpu: str = "1"
    ram: str = ""
    disk: str = "1GiB"


DEFAULT_SHARE = Share()


class DevstackNode(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    home: str
    did: str
    peer_id: str
    address: str
    """Its libp2p multiaddr with /p2p/<peer id>."""
    api_url: str
    pid: int
    log_file: str
    provider: bool


class _Ready(msgspec.Struct, kw_only=True):
    event: str
    pid: int
    did: str
    peer_id: str
    addresses: list[str]
    api_url: str
    ready_s: float = 0.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the node binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def least_ram(total: int) -> int:
    """The smallest RAM share onboarding accepts on a machine with ``total`` bytes (10%)."""
    return max(MIN_RAM, math.ceil(total * 0.10 / 2**20 + 1) * 2**20)


def node_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for node processes: ours without DMS_* (each node has its own home)."""
    source = os.environ if env is None else env
    return {k: v for k, v in source.items() if not k.startswith("DMS_")}


class Devstack:
    def __init__(
        self,
        root: Path,
        nodes: int = 3,
        *,
        share: Share | None = DEFAULT_SHARE,
        log_level: str = "info",
        stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S,
        python: str = sys.executable,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        if not 1 <= nodes <= 64:
            from dms.errors import InputError

            raise InputError("--nodes", nodes, "a number of nodes from 1 to 64")
        self.root = Path(root).absolute()
        self.count = nodes
        self.share = share
        self.log_level = log_level
        self.stop_timeout_s = stop_timeout_s
        self.python = python
        self.extra_env = dict(extra_env or {})
        self.nodes: list[DevstackNode] = []
        self.processes: dict[int, anyio.abc.Process] = {}
        self.homes = [Home(self.root / f"node{i}") for i in range(1, nodes + 1)]
        self.addresses: list[str] = []
        self._logs: dict[int, IO[bytes]] = {}
        self.log = get_logger(component="devstack")

    # -- life cycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):
            await self.stop()

    async def start(self) -> None:
        self.addresses = self.prepare()
        ready: list[_Ready | None] = [None] * self.count
        with _first_error():
            async with anyio.create_task_group() as group:
                for index in range(self.count):
                    group.start_soon(self._start_one, index, ready)
        self.nodes = [self._describe(index, info) for index, info in enumerate(ready)]
        await self._wait_connected()
        if self.share is not None:
            with _first_error():
                async with anyio.create_task_group() as group:
                    for node in self.nodes:
                        group.start_soon(self._onboard, node, self.share)

    def _describe(self, index: int, info: _Ready | None) -> DevstackNode:
        assert info is not None
        home = self.homes[index]
        return DevstackNode(
            name=f"node{index + 1}",
            home=str(home.root),
            did=info.did,
            peer_id=info.peer_id,
            address=self.addresses[index],
            api_url=info.api_url,
            pid=info.pid,
            log_file=str(home.logs_dir / "node.log"),
            provider=self.share is not None,
        )

    async def restart(self, index: int) -> DevstackNode:
        """Stop node ``index`` (0-based) cleanly and start it again from its home."""
        await self._stop_one(index)
        ready: list[_Ready | None] = [None] * self.count
        await self._start_one(index, ready)
        self.nodes[index] = self._describe(index, ready[index])
        return self.nodes[index]

    def prepare(self) -> list[str]:
        """Homes, keys, trust and config for every node; returns their libp2p addresses."""
        self.root.mkdir(parents=True, exist_ok=True)
        results = [init_home(home, passphrase=None) for home in self.homes]
        roots = tuple(did for r in results for did in (r.node_did, r.user_did))
        ports = [free_port() for _ in self.homes]
        addresses = [
            f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id_from_did(result.node_did)}"
            for port, result in zip(ports, results, strict=True)
        ]
        for index, home in enumerate(self.homes):
            settings: dict[str, Any] = {
                "network.listen": [f"/ip4/127.0.0.1/tcp/{ports[index]}"],
                "network.bootstrap": [addresses[0]] if index else [],
                "network.mdns": False,
                "api.host": "127.0.0.1",
                "api.port": 0,
                "log.level": self.log_level,
                "resources.require_idle_cpu": False,
            }
            init_home(home, passphrase=None, settings=settings, extra_roots=roots)
        return addresses

    async def _start_one(self, index: int, ready: list[_Ready | None]) -> None:
        home = self.homes[index]
        home.logs_dir.mkdir(parents=True, exist_ok=True)
        log = (home.logs_dir / "node.log").open("ab")  # closed in _stop_one()
        self._logs[index] = log
        env = {**node_env(), **self.extra_env}
        command = [self.python, "-m", "dms.cli.main", "--home", str(home.root), "run", "--json"]
        process = await anyio.open_process(
            command, stdin=None, stdout=-1, stderr=log, env=env, start_new_session=True
        )
        self.processes[index] = process
        found = None
        with anyio.move_on_after(START_TIMEOUT_S) as timer:
            found = await _ready_line(process)
        if found is None:
            why = (
                f"did not start within {START_TIMEOUT_S:g} s"
                if timer.cancelled_caught
                else f"exited before it was ready (exit code {await process.wait()})"
            )
            log_file = home.logs_dir / "node.log"
            raise DevstackError(
                f"node{index + 1} {why}; its log ({log_file}) ends with:\n{tail(log_file)}"
            )
        ready[index] = found

    async def _wait_connected(self) -> None:
        if len(self.nodes) < 2:
            return
        first = self.nodes[0].peer_id
        pending = {node.name: node for node in self.nodes[1:]}
        with anyio.move_on_after(CONNECT_TIMEOUT_S):
            while pending:
                for name, node in list(pending.items()):
                    peers = await anyio.to_thread.run_sync(_peers_of, node.api_url)
                    if first in peers:
                        del pending[name]
                if pending:
                    await anyio.sleep(0.05)
            return
        raise DevstackError(
            f"{', '.join(pending)} did not connect to node1 within {CONNECT_TIMEOUT_S:g} s; "
            f"see {', '.join(n.log_file for n in pending.values())}"
        )

    async def _onboard(self, node: DevstackNode, share: Share) -> None:
        await anyio.to_thread.run_sync(_onboard_sync, node, share)

    async def stop(self) -> None:
        """Stop every node: SIGTERM to all at once, then wait (SIGKILL after the timeout)."""
        for process in self.processes.values():
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        for index in list(self.processes):
            await self._stop_one(index)

    async def _stop_one(self, index: int) -> None:
        process = self.processes.pop(index, None)
        if process is not None:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
            with anyio.move_on_after(self.stop_timeout_s):
                await process.wait()
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
            await process.aclose()
        log = self._logs.pop(index, None)
        if log is not None:
            log.close()

    def exit_code(self, index: int) -> int | None:
        process = self.processes.get(index)
        return None if process is None else process.returncode

    def node(self, index: int) -> DevstackNode:
        return self.nodes[index]


@contextlib.contextmanager
def _first_error() -> Iterator[None]:
    """Our own error out of a task group's exception group (the first, when several)."""
    try:
        yield
    except BaseExceptionGroup as group:
        ours = [e for e in _leaves(group) if isinstance(e, DMSError)]
        if ours:
            raise ours[0] from None
        raise


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            found.extend(_leaves(error))
        else:
            found.append(error)
    return found


async def _ready_line(process: anyio.abc.Process) -> _Ready | None:
    """The node's ready line on its stdout (other lines are skipped); None at end of output."""
    assert process.stdout is not None
    buffer = b""
    async for chunk in process.stdout:
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            try:
                ready = msgspec.json.decode(line, type=_Ready)
            except msgspec.DecodeError:
                continue
            if ready.event == "ready":
                return ready
    return None


def _peers_of(api_url: str) -> set[str]:
    from dms.api.client import Client

    with Client(api_url, timeout_s=5) as client:
        return {peer.peer_id for peer in client.peers().peers}


def _onboard_sync(node: DevstackNode, share: Share) -> None:
    import time

    from dms.api.client import Client
    from dms.api.errors import APIError
    from dms.node.setup import read_api_token

    token = read_api_token(Home(Path(node.home)))
    with Client(node.api_url, token, timeout_s=30) as client:
        ram = share.ram or str(least_ram(client.hardware().ram))
        # Onboarding takes only cores idle now: on a small machine busy starting the other
        # nodes (or anything else) they may not be for a while, so try again for a time.
        deadline = time.monotonic() + ONBOARD_PATIENCE_S
        while True:
            try:
                client.onboard(cpu=share.cpu, ram=ram, disk=share.disk)
                return
            except APIError as exc:
                if exc.field != "cpu" or time.monotonic() > deadline:
                    raise DevstackError(f"{node.name}: onboarding refused: {exc}") from exc
                time.sleep(0.5)


def tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
