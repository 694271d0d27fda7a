"""A dms node with actors, as its own process: ``python -m tests.network.p2p_actor_node``.

It runs an :class:`~dms.actor.ActorSystem` over a :class:`~dms.network.p2p.P2PNetwork` on
127.0.0.1, trusting the DID given with ``--trust``, with one actor ``echo`` whose behaviors answer,
fail, invoke the caller back, and listen on a topic. It prints one JSON line (:class:`Ready`)
once it listens and stops when its stdin closes.
"""

from __future__ import annotations

import argparse
import os
import sys

import msgspec
import trio

from dms.actor import Actor, ActorSystem, Envelope, behavior
from dms.log import configure
from dms.network.p2p import P2PNetwork, P2PSettings
from dms.security import KeyPair, TrustContext

TOPIC = "/test/news"


class Ping(msgspec.Struct, frozen=True):
    n: int


class Pong(msgspec.Struct, frozen=True):
    n: int


class Note(msgspec.Struct, frozen=True):
    text: str


class Ready(msgspec.Struct, frozen=True):
    address: str
    peer_id: str
    did: str
    public_key: str


class Echo(Actor):
    @behavior("/test/echo", Ping, Pong)
    def echo(self, message: Ping, envelope: Envelope) -> Pong:
        return Pong(message.n)

    @behavior("/test/boom", Ping, Pong)
    def boom(self, message: Ping, envelope: Envelope) -> Pong:
        raise ValueError(f"boom {message.n}")

    @behavior("/test/relay", Ping, Pong)
    async def relay(self, message: Ping, envelope: Envelope) -> Pong:
        """Ask the caller to double the number: an invoke back across the network."""
        doubled = await self.invoke(envelope.sender, "/test/double", message, Pong)
        return Pong(doubled.n + 1)

    @behavior("/test/news", Note, topic=TOPIC)
    async def news(self, message: Note, envelope: Envelope) -> None:
        """Heard on the topic: tell the publisher, directly."""
        await self.send(envelope.sender, "/test/heard", Note(f"heard {message.text}"))


async def main(args: argparse.Namespace) -> None:
    key = KeyPair.from_seed(bytes.fromhex(args.seed)) if args.seed else KeyPair.generate()
    network = P2PNetwork(key.seed, P2PSettings(listen=("/ip4/127.0.0.1/tcp/0",)))
    trust = TrustContext(local_did=key.did, roots=[args.trust])
    async with ActorSystem(key, network, trust=trust) as system:
        await system.spawn(Echo, "echo")
        ready = Ready(network.addresses()[0], network.peer_id, key.did, key.public_key.hex())
        out.write(msgspec.json.encode(ready) + b"\n")
        out.flush()
        await trio.to_thread.run_sync(sys.stdin.read)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--trust", required=True, help="the DID allowed to invoke and broadcast")
    parser.add_argument("--seed", default="")
    # the ready line goes to the real stdout; anything a library prints goes to stderr
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    configure("warning", "console", stream=sys.stderr)
    trio.run(main, parser.parse_args())
