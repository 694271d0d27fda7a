"""A p2p node driven over stdin/stdout: ``python -m dms.network.p2p.tool [options]``.

It starts a :class:`P2PNetwork`, prints one JSON line ``{"event": "ready", "peer_id": ...,
"addresses": [...]}``, then reads commands as JSON lines on stdin and answers each with a
``result`` line carrying the command's ``id``. Frames and topic messages it receives are printed
as ``frame`` / ``message`` lines. Bytes travel as base64 (msgspec's encoding of ``bytes``).

Used by the multi-process tests and the network benchmark, and handy for poking at a network by
hand::

    python -m dms.network.p2p.tool --listen /ip4/127.0.0.1/tcp/4001
    {"op": "peers", "id": 1}

``--echo`` answers every direct frame with the same bytes (and prints nothing for it), the other
side of a request/reply measurement. The ``raw`` command opens a stream on any protocol and
writes arbitrary bytes: how the tests play a misbehaving peer.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, BinaryIO

import msgspec
import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from dms.errors import DMSError
from dms.log import configure
from dms.network.base import PeerID, PeerUnreachable, TopicHandler, TopicValidator
from dms.network.p2p.network import P2PNetwork
from dms.network.p2p.settings import P2PSettings


class _Command(msgspec.Struct, tag_field="op", kw_only=True):
    id: int = 0


class Connect(_Command, tag="connect"):
    address: str


class Send(_Command, tag="send"):
    peer: str
    data: bytes
    count: int = 1


class Publish(_Command, tag="publish"):
    topic: str
    data: bytes


class Subscribe(_Command, tag="subscribe"):
    topic: str
    reject_prefix: bytes | None = None
    """Frames starting with these bytes fail validation (to test validators)."""


class Unsubscribe(_Command, tag="unsubscribe"):
    topic: str


class Peers(_Command, tag="peers"):
    pass


class Ping(_Command, tag="ping"):
    peer: str


class Find(_Command, tag="find"):
    peer: str


class Advertise(_Command, tag="advertise"):
    pass


class Providers(_Command, tag="providers"):
    pass


class WaitConnected(_Command, tag="wait_connected"):
    peer: str


class WaitDisconnected(_Command, tag="wait_disconnected"):
    peer: str


class WaitTopicPeers(_Command, tag="wait_topic_peers"):
    topic: str
    count: int


class Raw(_Command, tag="raw"):
    peer: str
    protocol: str
    data: bytes


class Stats(_Command, tag="stats"):
    pass


class Stop(_Command, tag="stop"):
    pass


Command = (
    Connect
    | Send
    | Publish
    | Subscribe
    | Unsubscribe
    | Peers
    | Ping
    | Find
    | Advertise
    | Providers
    | WaitConnected
    | WaitDisconnected
    | WaitTopicPeers
    | Raw
    | Stats
    | Stop
)


class Ready(msgspec.Struct, tag_field="event", tag="ready", kw_only=True):
    peer_id: str
    addresses: list[str]


class Result(msgspec.Struct, tag_field="event", tag="result", kw_only=True):
    id: int
    ok: bool
    value: Any = None
    error: str | None = None
    error_type: str | None = None


class Frame(msgspec.Struct, tag_field="event", tag="frame", kw_only=True):
    peer: str
    data: bytes


class Message(msgspec.Struct, tag_field="event", tag="message", kw_only=True):
    topic: str
    origin: str
    data: bytes
    received_ns: int
    """time.monotonic_ns() at delivery: comparable across processes on one Linux machine."""


class StatsValue(msgspec.Struct, kw_only=True):
    dropped_peers: int
    peers: int


Event = Ready | Result | Frame | Message

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Command)
TOPIC_POLL_S = 0.02


class _Output:
    """Events go to the original stdout; anything else printing there is sent to stderr."""

    stream: BinaryIO | None = None

    @classmethod
    def take_stdout(cls) -> None:
        sys.stdout.flush()
        cls.stream = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())


def emit(event: Event) -> None:
    out = _Output.stream or sys.stdout.buffer
    out.write(_encoder.encode(event) + b"\n")
    out.flush()


class Tool:
    def __init__(self, network: P2PNetwork, echo: bool) -> None:
        self.network = network
        self.echo = echo
        self.stop = trio.Event()

    async def on_frame(self, peer: PeerID, frame: bytes) -> None:
        if self.echo:
            await self.network.send(peer, frame)
        else:
            emit(Frame(peer=peer, data=frame))

    async def run_command(self, command: Command) -> None:
        try:
            value = await self.execute(command)
        except Exception as exc:  # every failure is an answer, never a crash of the node
            emit(Result(id=command.id, ok=False, error=str(exc), error_type=type(exc).__name__))
        else:
            emit(Result(id=command.id, ok=True, value=value))

    async def execute(self, command: Command) -> Any:
        net = self.network
        match command:
            case Connect(address=address):
                return await net.connect(address)
            case Send(peer=peer, data=data, count=count):
                for _ in range(count):
                    await net.send(peer, data)
                return count
            case Publish(topic=topic, data=data):
                await net.publish(topic, data)
                return None
            case Subscribe(topic=topic, reject_prefix=prefix):
                await net.subscribe(topic, self._topic_handler(topic), _validator(prefix))
                return None
            case Unsubscribe(topic=topic):
                await net.unsubscribe(topic)
                return None
            case Peers():
                return msgspec.to_builtins(net.peers())
            case Ping(peer=peer):
                return await net.ping(peer)
            case Find(peer=peer):
                return msgspec.to_builtins(await net.find(peer))
            case Advertise():
                return await net.advertise()
            case Providers():
                return msgspec.to_builtins(await net.find_providers())
            case WaitConnected(peer=peer):
                await net.wait_connected(peer)
                return None
            case WaitDisconnected(peer=peer):
                await net.wait_disconnected(peer)
                return None
            case WaitTopicPeers(topic=topic, count=count):
                # gossipsub signals no subscription event we can wait on from here
                while len(net.topic_peers(topic)) < count:  # noqa: ASYNC110
                    await trio.sleep(TOPIC_POLL_S)
                return net.topic_peers(topic)
            case Raw(peer=peer, protocol=protocol, data=data):
                return await _raw(net, peer, protocol, data)
            case Stats():
                return StatsValue(dropped_peers=net.dropped_peers, peers=len(net.peers()))
            case Stop():
                self.stop.set()
                return None
        raise AssertionError(f"unhandled command {command!r}")

    def _topic_handler(self, topic: str) -> TopicHandler:
        async def handle(origin: PeerID, data: bytes) -> None:
            emit(Message(topic=topic, origin=origin, data=data, received_ns=time.monotonic_ns()))

        return handle


def _validator(prefix: bytes | None) -> TopicValidator | None:
    if prefix is None:
        return None
    return lambda _origin, frame: not frame.startswith(prefix)


async def _raw(net: P2PNetwork, peer: PeerID, protocol: str, data: bytes) -> str:
    """Open a stream on ``protocol``, write ``data``, report how the peer reacted."""
    try:
        stream = await net.host.new_stream(ID.from_base58(peer), [TProtocol(protocol)])
    except Exception as exc:
        raise PeerUnreachable(peer, f"stream on {protocol} refused: {exc}") from exc
    try:
        await stream.write(data)
        with trio.move_on_after(5):
            reply = await stream.read(1)
            return "closed" if not reply else "answered"
        return "open"
    except Exception as exc:
        return f"reset: {type(exc).__name__}"


async def _read_commands(tool: Tool, nursery: trio.Nursery) -> None:
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    buffer = b""
    async with stdin:
        while True:
            chunk = await stdin.receive_some(65536)
            if not chunk:
                tool.stop.set()
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                try:
                    command = _decoder.decode(line)
                except msgspec.DecodeError as exc:
                    emit(Result(id=-1, ok=False, error=f"bad command: {exc}", error_type="Input"))
                    continue
                nursery.start_soon(tool.run_command, command)


async def main(args: argparse.Namespace) -> None:
    settings = P2PSettings(
        listen=tuple(args.listen),
        bootstrap=tuple(args.bootstrap),
        mdns=args.mdns,
        max_frame=args.max_frame,
        dht=not args.no_dht,
    )
    seed = bytes.fromhex(args.seed) if args.seed else os.urandom(32)
    async with P2PNetwork(seed, settings) as network:
        tool = Tool(network, args.echo)
        network.on_receive(tool.on_frame)
        emit(Ready(peer_id=network.peer_id, addresses=network.addresses()))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_read_commands, tool, nursery)
            await tool.stop.wait()
            nursery.cancel_scope.cancel()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dms.network.p2p.tool", description=__doc__)
    parser.add_argument("--listen", action="append", default=[], help="multiaddr to listen on")
    parser.add_argument("--bootstrap", action="append", default=[], help="peer multiaddr")
    parser.add_argument("--seed", default="", help="32-byte Ed25519 seed as hex (random if empty)")
    parser.add_argument("--mdns", action="store_true", help="discover peers on the LAN")
    parser.add_argument("--no-dht", action="store_true", help="run without the Kademlia DHT")
    parser.add_argument("--max-frame", type=int, default=4 * 1024 * 1024, help="bytes")
    parser.add_argument("--echo", action="store_true", help="answer each frame with itself")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    if not args.listen:
        args.listen = ["/ip4/127.0.0.1/tcp/0"]
    return args


def run(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _Output.take_stdout()
    configure(args.log_level, "console", stream=sys.stderr)
    try:
        trio.run(main, args)
    except DMSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(run())
