"""Each rule of the receive pipeline refuses with a typed error: forged, tampered, expired,
replayed, wrong-audience, over-delegated, revoked, unauthorized and over-rate messages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import msgspec
import pytest

from dms.actor import (
    REPLY_PREFIX,
    Actor,
    ActorSystem,
    Address,
    Envelope,
    ErrorCode,
    Handle,
    MalformedEnvelope,
    Rate,
    RateLimited,
    RateLimitPolicy,
    RemoteError,
    Reply,
    SignedEnvelope,
    behavior,
    open_frame,
    seal,
)
from dms.actor.envelope import decode_reply, encode_payload
from dms.actor.system import LocalReply
from dms.network.memory import Fabric, MemoryNetwork
from dms.security import (
    Action,
    DelegationError,
    Expired,
    ExpiryTooFar,
    InvalidDID,
    InvalidSignature,
    KeyPair,
    NotRooted,
    Replayed,
    Revoked,
    Token,
    TokenExpired,
    TrustContext,
    Unauthorized,
    WrongAudience,
    WrongSubject,
    grant,
    revocation,
)
from dms.security.tokens import signing_payload
from tests.actor.actors import Echo, Ping, Pong, system

NS_PER_S = 1_000_000_000
HOUR = 3600 * NS_PER_S


class RawPeer:
    """A peer that builds envelopes by hand (to forge, tamper and replay) and reads replies."""

    def __init__(self, network: MemoryNetwork, keypair: KeyPair) -> None:
        self.network = network
        self.keypair = keypair
        self.handle = Handle(keypair.public_key.hex(), keypair.did, Address(network.peer_id, "raw"))
        self.replies: list[Reply] = []
        self._count = 0
        network.on_receive(self._on_frame)

    async def _on_frame(self, peer: str, frame: bytes) -> None:
        self.replies.append(decode_reply(open_frame(frame).payload))

    def envelope(
        self,
        to: Handle,
        behavior: str = "/test/echo",
        *,
        now_ns: int,
        expiry_ns: int | None = None,
        tokens: tuple[Token, ...] = (),
        payload: bytes | None = None,
        sender: Handle | None = None,
    ) -> Envelope:
        self._count += 1
        nonce = f"raw{self._count}"
        return Envelope(
            to,
            sender or self.handle,
            behavior,
            nonce,
            expiry_ns if expiry_ns is not None else now_ns + 30 * NS_PER_S,
            REPLY_PREFIX + nonce,
            "",
            payload if payload is not None else encode_payload(Ping(1)),
            tokens,
        )

    async def call(self, to: Handle, frame: bytes) -> Reply | None:
        """Send ``frame``; the reply, or None when none comes (the frame was dropped)."""
        before = len(self.replies)
        await self.network.send(to.address.host, frame)
        await anyio.wait_all_tasks_blocked()
        return self.replies[-1] if len(self.replies) > before else None


@dataclass
class World:
    node: ActorSystem
    echo: Handle
    peer: RawPeer
    user: KeyPair
    trust: TrustContext

    def now(self) -> int:
        return self.node.clock.now_ns()

    def token(self, **kw: Any) -> Token:
        """A token from the node's root user to the raw peer, for /test unless told otherwise."""
        fields: dict[str, Any] = {
            "expires_ns": self.now() + HOUR,
            "action": Action.INVOKE,
            "capabilities": ("/test",),
        }
        fields.update(kw)
        subject = fields.pop("subject", self.peer.keypair.did)
        issuer = fields.pop("issuer", self.user)
        return grant(issuer, subject, **fields)


@asynccontextmanager
async def world(**kw: Any) -> AsyncIterator[World]:
    """A node whose only root is a user key, an echo actor, and a raw peer that is no root."""
    fabric = Fabric()
    node_key, user = KeyPair.generate(), KeyPair.generate()
    trust = TrustContext(local_did=node_key.did, roots=[user.did])
    async with (
        system(fabric, "node", keypair=node_key, trust=trust, **kw) as node,
        fabric.network("raw") as network,
    ):
        echo = await node.spawn(Echo, "echo")
        yield World(node, echo, RawPeer(network, KeyPair.generate()), user, trust)


def refused(world: World, frame: bytes) -> None:
    """Run a frame through the node's receive pipeline up to the handler."""
    now = world.now()
    envelope = world.node.accept(frame, now)
    world.node._cells[envelope.to.address.inbox].admit(envelope, now)


def tamper(frame: bytes, change: Callable[[bytes], bytes]) -> bytes:
    signed = msgspec.msgpack.decode(frame, type=SignedEnvelope)
    return msgspec.msgpack.encode(SignedEnvelope(change(signed.body), signed.signature))


class TestEnvelopeRules:
    """Frames that fail before they are authenticated are dropped without a reply."""

    async def test_a_valid_token_lets_the_message_through(self) -> None:
        async with world() as w:
            env = w.peer.envelope(w.echo, now_ns=w.now(), tokens=(w.token(),))
            reply = await w.peer.call(w.echo, seal(env, w.peer.keypair))
            assert reply is not None and reply.error is None
            assert msgspec.json.decode(reply.result, type=Pong) == Pong(1)

    async def test_a_forged_envelope_is_refused_as_an_invalid_signature(self) -> None:
        async with world() as w:
            victim = KeyPair.generate()
            impostor = Handle(victim.public_key.hex(), victim.did, w.peer.handle.address)
            env = w.peer.envelope(w.echo, now_ns=w.now(), sender=impostor)
            frame = seal(env, w.peer.keypair)
            with pytest.raises(InvalidSignature, match=victim.did):
                refused(w, frame)
            assert await w.peer.call(w.echo, frame) is None
            assert w.node.refusals == {"InvalidSignature": 1}

    async def test_a_tampered_envelope_is_refused_as_an_invalid_signature(self) -> None:
        async with world() as w:
            env = w.peer.envelope(w.echo, now_ns=w.now(), tokens=(w.token(),))
            frame = tamper(seal(env, w.peer.keypair), lambda b: b.replace(b'{"n":1}', b'{"n":2}'))
            assert open_frame  # the body still decodes; only the signature is wrong
            with pytest.raises(InvalidSignature):
                refused(w, frame)

    async def test_an_expired_envelope_is_refused(self) -> None:
        async with world() as w:
            env = w.peer.envelope(w.echo, now_ns=w.now(), expiry_ns=w.now() - 1)
            frame = seal(env, w.peer.keypair)
            with pytest.raises(Expired, match="is not after now"):
                refused(w, frame)
            assert await w.peer.call(w.echo, frame) is None

    async def test_an_envelope_asking_to_live_too_long_is_refused(self) -> None:
        async with world() as w:
            env = w.peer.envelope(w.echo, now_ns=w.now(), expiry_ns=w.now() + HOUR)
            with pytest.raises(ExpiryTooFar):
                refused(w, seal(env, w.peer.keypair))

    async def test_a_replayed_envelope_is_refused_and_only_the_first_is_answered(self) -> None:
        async with world() as w:
            env = w.peer.envelope(w.echo, now_ns=w.now(), tokens=(w.token(),))
            frame = seal(env, w.peer.keypair)
            assert await w.peer.call(w.echo, frame) is not None
            assert await w.peer.call(w.echo, frame) is None
            with pytest.raises(Replayed, match="already received"):
                w.node.accept(frame, w.now())
            assert w.node.refusals == {"Replayed": 1}

    async def test_an_envelope_for_another_audience_is_refused(self) -> None:
        async with world() as w:
            elsewhere = Handle(w.echo.id, KeyPair.generate().did, w.echo.address)
            env = w.peer.envelope(elsewhere, now_ns=w.now(), tokens=(w.token(),))
            with pytest.raises(WrongAudience, match="addressed to"):
                refused(w, seal(env, w.peer.keypair))

    @pytest.mark.parametrize(
        ("frame", "error"),
        [
            (b"\x00garbage", MalformedEnvelope),
            (msgspec.msgpack.encode(SignedEnvelope(b"\x93\x01", b"")), MalformedEnvelope),
        ],
        ids=["not-msgpack", "not-an-envelope"],
    )
    async def test_a_malformed_frame_is_refused(self, frame: bytes, error: type[Exception]) -> None:
        async with world() as w:
            with pytest.raises(error):
                w.node.accept(frame, w.now())
            assert await w.peer.call(w.echo, frame) is None

    async def test_a_sender_that_is_not_a_did_key_is_refused(self) -> None:
        async with world() as w:
            bogus = Handle("00", "did:web:example.com", w.peer.handle.address)
            env = w.peer.envelope(w.echo, now_ns=w.now(), sender=bogus)
            with pytest.raises(InvalidDID):
                refused(w, seal(env, w.peer.keypair))


def over_delegated(w: World) -> Token:
    """A chain whose second link widens /test/echo to /test: signed, but not a narrowing."""
    middle = KeyPair.generate()
    parent = w.token(
        subject=middle.did, action=Action.DELEGATE, capabilities=("/test/echo",), depth=1
    )
    child = Token(
        issuer=middle.did,
        subject=w.peer.keypair.did,
        action=Action.INVOKE,
        capabilities=("/test",),
        expires_ns=parent.expires_ns,
        nonce="widened-0001",
        chain=(parent.as_link(),),
    )
    return msgspec.structs.replace(child, signature=middle.sign(signing_payload(child)))


def forged(w: World) -> Token:
    token = w.token()
    return msgspec.structs.replace(token, signature=KeyPair.generate().sign(b"x"))


TOKEN_CASES: list[tuple[str, Callable[[World], tuple[Token, ...]], type[Exception]]] = [
    ("no-token", lambda w: (), Unauthorized),
    ("other-capability", lambda w: (w.token(capabilities=("/dms/other",)),), Unauthorized),
    ("expired", lambda w: (w.token(expires_ns=w.now() - 1),), TokenExpired),
    ("over-delegated", lambda w: (over_delegated(w),), DelegationError),
    ("wrong-audience", lambda w: (w.token(audience=KeyPair.generate().did),), WrongAudience),
    ("stolen", lambda w: (w.token(subject=KeyPair.generate().did),), WrongSubject),
    ("forged", lambda w: (forged(w),), InvalidSignature),
    ("not-rooted", lambda w: (w.token(issuer=KeyPair.generate()),), NotRooted),
]


class TestCapabilityRules:
    """After authentication, a refused capability is answered with a typed remote error."""

    @pytest.mark.parametrize(
        ("make", "error"),
        [(make, error) for _, make, error in TOKEN_CASES],
        ids=[name for name, _, _ in TOKEN_CASES],
    )
    async def test_a_bad_token_is_refused_with_its_reason(
        self, make: Callable[[World], tuple[Token, ...]], error: type[Exception]
    ) -> None:
        async with world() as w:
            tokens = make(w)
            with pytest.raises(error):
                refused(
                    w, seal(w.peer.envelope(w.echo, now_ns=w.now(), tokens=tokens), w.peer.keypair)
                )
            env = w.peer.envelope(w.echo, now_ns=w.now(), tokens=tokens)
            reply = await w.peer.call(w.echo, seal(env, w.peer.keypair))
            assert reply is not None and reply.error is not None
            assert (reply.error.code, reply.error.type) == (ErrorCode.UNAUTHORIZED, error.__name__)

    async def test_a_revoked_token_is_refused_from_the_moment_it_is_revoked(self) -> None:
        async with world() as w:
            token = w.token()
            first = w.peer.envelope(w.echo, now_ns=w.now(), tokens=(token,))
            reply = await w.peer.call(w.echo, seal(first, w.peer.keypair))
            assert reply is not None and reply.error is None
            w.trust.revoke(revocation(w.user, token))
            again = w.peer.envelope(w.echo, now_ns=w.now(), tokens=(token,))
            reply = await w.peer.call(w.echo, seal(again, w.peer.keypair))
            assert reply is not None and reply.error is not None
            assert (reply.error.code, reply.error.type) == (ErrorCode.UNAUTHORIZED, "Revoked")
            with pytest.raises(Revoked):
                refused(
                    w,
                    seal(w.peer.envelope(w.echo, now_ns=w.now(), tokens=(token,)), w.peer.keypair),
                )

    async def test_public_behaviors_need_no_token(self) -> None:
        async with world() as w:
            env = w.peer.envelope(w.echo, "/public/hello", now_ns=w.now())
            reply = await w.peer.call(w.echo, seal(env, w.peer.keypair))
            assert reply is not None and reply.error is None

    async def test_a_node_attaches_its_provide_anchors_when_it_invokes(self) -> None:
        fabric = Fabric()
        user, key_a, key_b = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
        trust_b = TrustContext(local_did=key_b.did, roots=[user.did])
        trust_a = TrustContext(local_did=key_a.did)
        async with (
            system(fabric, "a", keypair=key_a, trust=trust_a) as a,
            system(fabric, "b", keypair=key_b, trust=trust_b) as b,
        ):
            echo = await b.spawn(Echo, "echo")
            with pytest.raises(RemoteError) as caught:
                await a.invoke(echo, "/test/echo", Ping(1), Pong)
            assert caught.value.error_type == "Unauthorized"
            trust_a.add_provide_anchor(
                grant(
                    user,
                    key_a.did,
                    expires_ns=b.clock.now_ns() + HOUR,
                    action=Action.INVOKE,
                    capabilities=("/test",),
                )
            )
            assert await a.invoke(echo, "/test/echo", Ping(2), Pong) == Pong(2)

    async def test_only_the_invoked_actors_did_may_answer(self) -> None:
        async with world() as w:
            impostor = KeyPair.generate()
            w.trust.add_root(impostor.did)
            nonce = "fake-reply-1"
            slot = LocalReply(Pong, w.echo.did, "root")
            w.node._pending[nonce] = slot
            reply = Envelope(
                w.node.root,
                Handle(impostor.public_key.hex(), impostor.did, w.peer.handle.address),
                REPLY_PREFIX + nonce,
                "imp-1",
                w.now() + NS_PER_S,
                payload=encode_payload(Reply(result=msgspec.Raw(b'{"n":666}'))),
            )
            await w.peer.network.send("node", seal(reply, impostor))
            await anyio.wait_all_tasks_blocked()
            assert not slot.done
            assert w.node.refusals == {"Unauthorized": 1}


class Bulk(Actor):
    @behavior("/test/bulk", Ping, Pong, rate_class="bulk")
    def bulk(self, message: Ping, envelope: Envelope) -> Pong:
        return Pong(message.n)

    @behavior("/test/echo", Ping, Pong)
    def echo(self, message: Ping, envelope: Envelope) -> Pong:
        return Pong(message.n)


class TestRateLimits:
    """A flooding peer exhausts its own budget, for its own behavior class only."""

    async def test_a_flooding_sender_is_limited_while_another_is_served(self) -> None:
        fabric = Fabric()
        keys = {name: KeyPair.generate() for name in ("node", "flood", "quiet")}
        trust = TrustContext(
            local_did=keys["node"].did, roots=[keys["flood"].did, keys["quiet"].did]
        )
        policy = RateLimitPolicy(
            default=Rate(per_s=1000.0, burst=1000), classes={"bulk": Rate(per_s=0.001, burst=5)}
        )
        async with (
            system(fabric, "node", keypair=keys["node"], trust=trust, rate_limits=policy) as node,
            system(fabric, "flood", keypair=keys["flood"]) as flood,
            system(fabric, "quiet", keypair=keys["quiet"]) as quiet,
        ):
            bulk = await node.spawn(Bulk, "bulk")
            codes: list[ErrorCode | None] = []
            for n in range(8):
                try:
                    await flood.invoke(bulk, "/test/bulk", Ping(n), Pong)
                    codes.append(None)
                except RemoteError as exc:
                    codes.append(exc.code)
            assert codes == [None] * 5 + [ErrorCode.RATE_LIMITED] * 3
            assert await flood.invoke(bulk, "/test/echo", Ping(1), Pong) == Pong(1)
            assert await quiet.invoke(bulk, "/test/bulk", Ping(1), Pong) == Pong(1)
            assert node.statistics().refusals == {"RateLimited": 3}

    async def test_the_nodes_own_actors_are_exempt_unless_configured_otherwise(self) -> None:
        policy = RateLimitPolicy(default=Rate(per_s=0.001, burst=1), exempt_local=False)
        async with system(Fabric(), "a", rate_limits=policy) as node:
            echo = await node.spawn(Echo, "echo")
            await node.invoke(echo, "/test/echo", Ping(1), Pong)
            with pytest.raises(RateLimited, match="at most 0.001 messages/s with bursts of 1"):
                await node.invoke(echo, "/test/echo", Ping(2), Pong)
        async with system(
            Fabric(), "a", rate_limits=RateLimitPolicy(default=Rate(0.001, 1))
        ) as node:
            echo = await node.spawn(Echo, "echo")
            for n in range(3):
                await node.invoke(echo, "/test/echo", Ping(n), Pong)
