"""Over libp2p, an envelope from the Noise-authenticated peer itself is not verified again;
envelopes naming any other DID are, and forgeries are refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
import trio

from dms.actor import Actor, ActorSystem, Envelope, Handle, behavior, seal
from dms.network.p2p import P2PNetwork, P2PSettings
from dms.security import KeyPair, TrustContext
from tests.conftest import Verifications
from tests.network.p2p_actor_node import Ping, Pong
from tests.network.p2p_logs import log_to_current_stderr

pytestmark = pytest.mark.slow

LOOPBACK = P2PSettings(listen=("/ip4/127.0.0.1/tcp/0",))
NS_PER_S = 1_000_000_000


@pytest.fixture(autouse=True)
def _logs_to_current_stderr() -> None:
    log_to_current_stderr()


class Echo(Actor):
    def __init__(self) -> None:
        self.told: list[int] = []

    @behavior("/test/echo", Ping, Pong)
    def echo(self, message: Ping, envelope: Envelope) -> Pong:
        return Pong(message.n)

    @behavior("/test/tell", Ping)
    def tell(self, message: Ping, envelope: Envelope) -> None:
        self.told.append(message.n)


class Caller(Actor):
    """Only calls others."""


@dataclass
class Nodes:
    a: ActorSystem
    b: ActorSystem
    a_key: KeyPair
    own: KeyPair
    """A key of its own for an actor on ``a`` (``b`` trusts it)."""
    echo: Handle

    def told(self) -> list[int]:
        actor = self.b.actor("echo")
        assert isinstance(actor, Echo)
        return actor.told


@asynccontextmanager
async def two_nodes() -> AsyncIterator[Nodes]:
    a_key, b_key, own = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    a_trust = TrustContext(local_did=a_key.did, roots=[b_key.did])
    b_trust = TrustContext(local_did=b_key.did, roots=[a_key.did, own.did])
    async with (
        ActorSystem(a_key, P2PNetwork(a_key.seed, LOOPBACK), trust=a_trust) as a,
        ActorSystem(b_key, P2PNetwork(b_key.seed, LOOPBACK), trust=b_trust) as b,
    ):
        await a.network.connect(b.network.addresses()[0])
        echo = await b.spawn(Echo, "echo")
        yield Nodes(a, b, a_key, own, echo)


class TestAuthenticatedPeers:
    """P2PNetwork names the did:key behind a peer id; the actor layer trusts it for that DID only."""

    async def test_the_network_vouches_for_the_did_of_the_key_behind_a_peer_id(self) -> None:
        key = KeyPair.generate()
        async with P2PNetwork(key.seed, LOOPBACK) as network:
            assert network.authenticated_did(network.peer_id) == key.did
            assert network.authenticated_did("not-a-peer-id") is None

    async def test_an_invoke_between_the_two_peers_verifies_no_envelope(
        self, verifications: Verifications
    ) -> None:
        async with two_nodes() as nodes:
            for n in range(5):
                assert await nodes.a.invoke(nodes.echo, "/test/echo", Ping(n), Pong) == Pong(n)
            assert verifications.by_key == {}

    async def test_an_actor_with_a_key_of_its_own_is_verified(
        self, verifications: Verifications
    ) -> None:
        async with two_nodes() as nodes:
            await nodes.a.spawn(Caller, "caller", keypair=nodes.own)
            caller = nodes.a.actor("caller")
            assert await caller.invoke(nodes.echo, "/test/echo", Ping(3), Pong) == Pong(3)
            assert verifications.by_key == {bytes(nodes.own.public_key): 1}

    async def test_a_forgery_sent_by_the_authenticated_peer_is_refused(
        self, verifications: Verifications
    ) -> None:
        async with two_nodes() as nodes:
            victim = KeyPair.generate()
            impostor = Handle(victim.public_key.hex(), victim.did, nodes.a.root.address)
            expiry = nodes.a.clock.now_ns() + 30 * NS_PER_S
            forged = Envelope(nodes.echo, impostor, "/test/tell", "f1", expiry, payload=b'{"n":1}')
            await nodes.a.network.send(nodes.b.peer_id, seal(forged, nodes.a_key))
            # frames from one peer arrive in order: once this answers, the forgery was handled
            with trio.fail_after(10):
                assert await nodes.a.invoke(nodes.echo, "/test/echo", Ping(2), Pong) == Pong(2)
            assert nodes.b.refusals == {"InvalidSignature": 1}
            assert nodes.told() == []
            assert verifications.by_key == {bytes(victim.public_key): 1}
