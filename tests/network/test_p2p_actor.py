"""Actors on two nodes in two processes, over libp2p: signed invokes both ways, and broadcast."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import pytest
import trio

from dms.actor import Actor, ActorSystem, Envelope, ErrorCode, RemoteError, behavior
from dms.actor.handle import Address, Handle
from dms.network.p2p import P2PNetwork, P2PSettings
from dms.security import KeyPair, TrustContext
from tests.network.p2p_actor_node import TOPIC, Note, Ping, Pong, Ready
from tests.network.p2p_logs import log_to_current_stderr

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _logs_to_current_stderr() -> None:
    log_to_current_stderr()


LOOPBACK = P2PSettings(listen=("/ip4/127.0.0.1/tcp/0",))
REPO = Path(__file__).resolve().parents[2]


class Local(Actor):
    """The test's own actor: doubles numbers for the remote node, records what it hears."""

    def __init__(self) -> None:
        self.heard: list[str] = []
        self.heard_something = trio.Event()

    @behavior("/test/double", Ping, Pong)
    def double(self, message: Ping, envelope: Envelope) -> Pong:
        return Pong(message.n * 2)

    @behavior("/test/heard", Note)
    def on_heard(self, message: Note, envelope: Envelope) -> None:
        self.heard.append(message.text)
        self.heard_something.set()


@asynccontextmanager
async def remote_node(trusted: str, log: Path) -> AsyncIterator[Ready]:
    """The other node, in its own process; yields what it printed once it listened."""
    with log.open("wb") as errors:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "tests.network.p2p_actor_node", f"--trust={trusted}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            cwd=REPO,
        )
    assert process.stdin is not None and process.stdout is not None
    try:
        line = b""
        with trio.fail_after(20):
            while not line.endswith(b"\n"):
                chunk = await process.stdout.receive_some(4096)
                if not chunk:
                    raise AssertionError(f"remote node exited:\n{await trio.Path(log).read_text()}")
                line += chunk
        yield msgspec.json.decode(line, type=Ready)
    finally:
        with trio.move_on_after(5):
            await process.stdin.aclose()
            await process.wait()
        if process.returncode is None:
            process.kill()


class Nodes(msgspec.Struct, frozen=True):
    system: ActorSystem
    echo: Handle
    """The remote node's ``echo`` actor."""
    remote_address: str


@asynccontextmanager
async def two_nodes(tmp_path: Path) -> AsyncIterator[Nodes]:
    """This process's node, connected to the remote one."""
    key = KeyPair.generate()
    async with remote_node(key.did, tmp_path / "remote.log") as remote:
        trust = TrustContext(local_did=key.did, roots=[remote.did])
        async with ActorSystem(key, P2PNetwork(key.seed, LOOPBACK), trust=trust) as system:
            await system.network.connect(remote.address)
            echo = Handle(remote.public_key, remote.did, Address(remote.peer_id, "echo"))
            yield Nodes(system, echo, remote.address)


class TestInvokesAcrossProcesses:
    """Signed invokes cross real libp2p connections and come back typed, errors included."""

    async def test_two_nodes_exchange_invokes(self, tmp_path: Path) -> None:
        async with two_nodes(tmp_path) as nodes:
            system, echo = nodes.system, nodes.echo
            await system.spawn(Local, "local")
            local = system.actor("local")
            assert await system.invoke(echo, "/test/echo", Ping(7), Pong) == Pong(7)
            # the remote handler invokes the calling actor back before it answers
            assert await local.invoke(echo, "/test/relay", Ping(20), Pong) == Pong(41)
            with pytest.raises(RemoteError) as caught:
                await system.invoke(echo, "/test/boom", Ping(3), Pong)
            assert (caught.value.code, caught.value.remote_message) == (
                ErrorCode.HANDLER_FAILED,
                "boom 3",
            )

    async def test_many_concurrent_invokes_all_come_back(self, tmp_path: Path) -> None:
        async with two_nodes(tmp_path) as nodes:
            system, echo = nodes.system, nodes.echo
            results: dict[int, Pong] = {}

            async def call(n: int) -> None:
                results[n] = await system.invoke(echo, "/test/echo", Ping(n), Pong)

            async with trio.open_nursery() as nursery:
                for n in range(300):
                    nursery.start_soon(call, n)
            assert results == {n: Pong(n) for n in range(300)}

    async def test_a_caller_the_remote_node_does_not_trust_is_refused(self, tmp_path: Path) -> None:
        async with two_nodes(tmp_path) as nodes:
            stranger = KeyPair.generate()
            network = P2PNetwork(stranger.seed, LOOPBACK)
            async with ActorSystem(stranger, network) as other:
                await network.connect(nodes.remote_address)
                with pytest.raises(RemoteError) as caught:
                    await other.invoke(nodes.echo, "/test/echo", Ping(1), Pong)
                assert caught.value.code is ErrorCode.UNAUTHORIZED


class TestBroadcastAcrossProcesses:
    """A signed broadcast reaches the other node's subscribed actor, which answers directly."""

    async def test_a_broadcast_is_heard_on_the_other_node(self, tmp_path: Path) -> None:
        async with two_nodes(tmp_path) as nodes:
            system, remote_peer = nodes.system, nodes.echo.address.host
            await system.spawn(Local, "local")
            local = system.actor("local")
            assert isinstance(local, Local)
            network = system.network
            assert isinstance(network, P2PNetwork)
            with trio.fail_after(20):
                while remote_peer not in network.topic_peers(TOPIC):  # noqa: ASYNC110
                    await trio.sleep(0.02)
                await local.publish(TOPIC, "/test/news", Note("capacity advert"))
                await local.heard_something.wait()
            assert local.heard == ["heard capacity advert"]
