"""The envelope signature is not verified again for a direct frame from the peer the network
authenticated; every other check of the receive pipeline still runs, broadcasts are always
verified, and the in-memory network vouches for nobody."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import pytest

from dms.actor import (
    Actor,
    ActorSystem,
    Address,
    Envelope,
    ErrorCode,
    Handle,
    RemoteError,
    behavior,
    open_frame,
    seal,
)
from dms.actor.envelope import encode_payload
from dms.clock import LoopClock
from dms.network import PeerID
from dms.network.memory import Fabric, MemoryNetwork
from dms.security import InvalidSignature, KeyPair, TrustContext
from tests.actor.actors import Echo, Note, Ping, Pong
from tests.conftest import Verifications

NS_PER_S = 1_000_000_000
TOPIC = "/test/news"
ADDRESS = Address(host="peer", inbox="x")


class VouchingNetwork(MemoryNetwork):
    """An in-memory node that vouches for peers as libp2p's authenticated connections do."""

    def __init__(self, fabric: Fabric, peer_id: PeerID, dids: dict[PeerID, str]) -> None:
        super().__init__(fabric, peer_id)
        self._dids = dids

    def authenticated_did(self, peer: PeerID) -> str | None:
        return self._dids.get(peer)


class Listener(Actor):
    """Hears a topic."""

    def __init__(self) -> None:
        self.heard: list[str] = []

    @behavior(TOPIC, Note, topic=TOPIC)
    def news(self, message: Note, envelope: Envelope) -> None:
        self.heard.append(message.text)


class Caller(Actor):
    """An actor that only calls others (spawned with a key of its own)."""


@dataclass
class Pair:
    a: ActorSystem
    b: ActorSystem
    a_key: KeyPair
    echo: Handle
    """``b``'s echo actor."""

    def envelope(self, behavior_path: str, *, expiry_ns: int, nonce: str) -> Envelope:
        """An envelope from ``a``'s root to ``b``'s echo actor, built by hand."""
        return Envelope(
            self.echo,
            self.a.root,
            behavior_path,
            nonce,
            expiry_ns,
            "",
            "",
            encode_payload(Ping(1)),
            (),
        )


@asynccontextmanager
async def pair(
    *, vouch: bool, b_roots: tuple[str, ...] | None = None, extra_keys: tuple[KeyPair, ...] = ()
) -> AsyncIterator[Pair]:
    """Two nodes on one fabric; ``vouch``: their networks vouch for each other's DID."""
    fabric = Fabric()
    a_key, b_key = KeyPair.generate(), KeyPair.generate()
    dids = {"a": a_key.did, "b": b_key.did} if vouch else {}
    roots = [a_key.did, *(k.did for k in extra_keys)] if b_roots is None else list(b_roots)
    clock = LoopClock()
    async with (
        ActorSystem(
            a_key,
            VouchingNetwork(fabric, "a", dids),
            trust=TrustContext(local_did=a_key.did, roots=[b_key.did]),
            clock=clock,
        ) as a,
        ActorSystem(
            b_key,
            VouchingNetwork(fabric, "b", dids),
            trust=TrustContext(local_did=b_key.did, roots=roots),
            clock=clock,
        ) as b,
    ):
        echo = await b.spawn(Echo, "echo")
        yield Pair(a, b, a_key, echo)


def told(pair: Pair) -> list[int]:
    actor = pair.b.actor("echo")
    assert isinstance(actor, Echo)
    return actor.seen


class TestOpenFrame:
    """open_frame skips the signature check only when the sender is the authenticated DID."""

    @pytest.mark.parametrize(
        ("authenticated", "checks"),
        [
            pytest.param("sender", 0, id="the sender is the authenticated DID: not verified"),
            pytest.param("other", 1, id="another DID is authenticated: verified"),
            pytest.param("none", 1, id="nothing authenticated: verified"),
            pytest.param("empty", 1, id="an empty DID vouches for nobody: verified"),
        ],
    )
    def test_the_signature_is_checked_unless_the_sender_is_authenticated(
        self, verifications: Verifications, authenticated: str, checks: int
    ) -> None:
        sender, other = KeyPair.generate(), KeyPair.generate()
        handle = Handle(sender.public_key.hex(), sender.did, ADDRESS)
        sealed = seal(Envelope(handle, handle, "/test/echo", "n1", 10**18), sender)
        did = {"sender": sender.did, "other": other.did, "none": None, "empty": ""}[authenticated]
        assert open_frame(sealed, did).sender.did == sender.did
        assert verifications.of(sender) == checks

    def test_a_forgery_naming_a_did_other_than_the_authenticated_one_is_refused(
        self, verifications: Verifications
    ) -> None:
        peer, victim = KeyPair.generate(), KeyPair.generate()
        impostor = Handle(victim.public_key.hex(), victim.did, ADDRESS)
        forged = seal(Envelope(impostor, impostor, "/test/echo", "n1", 10**18), peer)
        with pytest.raises(InvalidSignature, match=victim.did):
            open_frame(forged, peer.did)
        assert verifications.of(victim) == 1


class TestTheMemoryNetwork:
    """The in-memory network authenticates nothing, so every envelope is verified over it."""

    async def test_it_vouches_for_no_peer(self) -> None:
        fabric = Fabric()
        async with fabric.network("a") as a, fabric.network("b"):
            assert a.authenticated_did("b") is None
            assert a.authenticated_did("a") is None

    async def test_both_envelopes_of_an_invoke_are_verified(
        self, verifications: Verifications
    ) -> None:
        async with pair(vouch=False) as p:
            assert await p.a.invoke(p.echo, "/test/echo", Ping(5), Pong) == Pong(5)
            assert (verifications.of(p.a_key), verifications.of(p.b.keypair)) == (1, 1)


class TestAVouchingNetwork:
    """Only the signature step is skipped: expiry, replay, capability and broadcasts still count."""

    async def test_an_invoke_between_vouched_peers_verifies_no_signature(
        self, verifications: Verifications
    ) -> None:
        async with pair(vouch=True) as p:
            assert await p.a.invoke(p.echo, "/test/echo", Ping(5), Pong) == Pong(5)
            assert verifications.total == 0

    async def test_an_actor_with_a_key_of_its_own_is_verified(
        self, verifications: Verifications
    ) -> None:
        own = KeyPair.generate()
        async with pair(vouch=True, extra_keys=(own,)) as p:
            await p.a.spawn(Caller, "caller", keypair=own)
            caller = p.a.actor("caller")
            assert await caller.invoke(p.echo, "/test/echo", Ping(6), Pong) == Pong(6)
            # its request names its own DID, not the node's: checked; the reply is vouched for
            assert (verifications.of(own), verifications.total) == (1, 1)

    async def test_a_forged_envelope_on_a_vouched_link_is_refused(
        self, verifications: Verifications
    ) -> None:
        async with pair(vouch=True) as p:
            victim = KeyPair.generate()
            impostor = Handle(victim.public_key.hex(), victim.did, p.a.root.address)
            expiry = p.a.clock.now_ns() + NS_PER_S
            forged = Envelope(p.echo, impostor, "/test/tell", "forged1", expiry, payload=b'{"n":1}')
            await p.a.network.send("b", seal(forged, p.a_key))
            await anyio.wait_all_tasks_blocked()
            assert p.b.refusals == {"InvalidSignature": 1}
            assert told(p) == []
            assert verifications.of(victim) == 1

    async def test_a_replayed_vouched_envelope_is_refused(self) -> None:
        async with pair(vouch=True) as p:
            expiry = p.a.clock.now_ns() + NS_PER_S
            frame = seal(p.envelope("/test/tell", expiry_ns=expiry, nonce="once"), p.a_key)
            for _ in range(2):
                await p.a.network.send("b", frame)
                await anyio.wait_all_tasks_blocked()
            assert told(p) == [1]
            assert p.b.refusals == {"Replayed": 1}

    async def test_an_expired_vouched_envelope_is_refused(self) -> None:
        async with pair(vouch=True) as p:
            expiry = p.a.clock.now_ns() - 1
            frame = seal(p.envelope("/test/tell", expiry_ns=expiry, nonce="old"), p.a_key)
            await p.a.network.send("b", frame)
            await anyio.wait_all_tasks_blocked()
            assert told(p) == []
            assert p.b.refusals == {"Expired": 1}

    async def test_a_vouched_peer_without_a_capability_is_refused(
        self, verifications: Verifications
    ) -> None:
        async with pair(vouch=True, b_roots=()) as p:
            with pytest.raises(RemoteError) as caught:
                await p.a.invoke(p.echo, "/test/echo", Ping(1), Pong)
            assert caught.value.code is ErrorCode.UNAUTHORIZED
            assert verifications.total == 0

    async def test_a_broadcast_from_a_vouched_peer_is_verified(
        self, verifications: Verifications
    ) -> None:
        async with pair(vouch=True) as p:
            await p.b.spawn(Listener, "listener")
            await p.a.publish(TOPIC, TOPIC, Note("advert"))
            await anyio.wait_all_tasks_blocked()
            listener = p.b.actor("listener")
            assert isinstance(listener, Listener)
            assert listener.heard == ["advert"]
            assert verifications.of(p.a_key) >= 1
