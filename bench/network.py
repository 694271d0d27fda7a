"""Networking between processes on loopback: raw libp2p streams against dms, same run.

Workloads (a second process answers; 200-byte messages):

- raw stream: a bare libp2p stream (Noise, yamux) with an echo handler; one write per message.
  The baseline.
- raw stream, tuned: the same, given the two tunings our links use on their streams (reads and
  writes on the yamux stream itself, window updates once half the window is used). Not a goal;
  it shows how much of the gap to the raw stream is the actor layer's own work.
- frames: ``P2PNetwork.send`` to a node that sends each frame back (the ``Network`` protocol:
  one long-lived stream each way, coalesced writes).
- invoke: ``ActorSystem.invoke`` of an echo behavior on the other node: signed envelopes both
  ways, signature and replay checks, capability check, typed payloads.

Each runs one at a time ("sequential") and with 64 in flight. Then: broadcast delivery latency
from one node to 4 others (5 nodes in 5 processes, gossipsub, 20 messages per second), and the
time to dial a peer with py-libp2p's default host (its 250 ms "happy eyeballs" wait) and with
ours.

Each round runs every workload once; the best of ``--repeat`` rounds is kept (the machine is
shared and noisy).

    .venv/bin/python bench/network.py [--json] [--count N] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import trio

RAW_PROTOCOL = "/dms/bench/echo/1.0.0"
TUNED_PROTOCOL = "/dms/bench/echo-tuned/1.0.0"
MESSAGE = b"x" * 200
IN_FLIGHT = 64
ECHO_INBOX = "echo"
NODES = 5
BROADCAST_INTERVAL_S = 0.05
"""Adverts go out every few seconds per node: 20 per second is already a busy network."""
SCRIPT = os.path.abspath(__file__)


class Ping(msgspec.Struct, frozen=True):
    n: int
    pad: str = ""


class Pong(msgspec.Struct, frozen=True):
    n: int
    pad: str = ""


class Served(msgspec.Struct, frozen=True):
    """What the serving process reports on stdout once it listens."""

    address: str
    peer_id: str
    did: str
    public_key: str


# -- the serving process -----------------------------------------------------------------------


def serve(trusted_did: str) -> None:
    """Run an actor system with an echo behavior and a raw echo protocol; stop at stdin EOF."""
    from dms.actor import Actor, ActorSystem, Envelope, Rate, RateLimitPolicy, behavior
    from dms.log import configure
    from dms.network.p2p import P2PNetwork, P2PSettings
    from dms.network.p2p.host import batch_window_updates
    from dms.network.p2p.links import muxed
    from dms.security import KeyPair, TrustContext

    class Echo(Actor):
        @behavior("/bench/echo", Ping, Pong)
        def echo(self, message: Ping, envelope: Envelope) -> Pong:
            return Pong(message.n, message.pad)

    async def raw_echo(stream: Any) -> None:
        try:
            while True:
                data = await stream.read(65536)
                if not data:
                    return
                await stream.write(data)
        except Exception:  # the client closed the stream: the measurement is over
            return

    async def tuned_echo(stream: Any) -> None:
        batch_window_updates(stream)
        await raw_echo(muxed(stream))

    async def main() -> None:
        key = KeyPair.generate()
        network = P2PNetwork(key.seed, P2PSettings(listen=("/ip4/127.0.0.1/tcp/0",)))
        unlimited = RateLimitPolicy(default=Rate(per_s=1e12, burst=10**12))
        trust = TrustContext(local_did=key.did, roots=[trusted_did])
        async with ActorSystem(key, network, trust=trust, rate_limits=unlimited) as system:
            await system.spawn(Echo, ECHO_INBOX)
            network.host.set_stream_handler(RAW_PROTOCOL, raw_echo)  # type: ignore[arg-type]
            network.host.set_stream_handler(TUNED_PROTOCOL, tuned_echo)  # type: ignore[arg-type]
            served = Served(network.addresses()[0], network.peer_id, key.did, key.public_key.hex())
            out.write(msgspec.json.encode(served) + b"\n")
            out.flush()
            await trio.to_thread.run_sync(sys.stdin.read)

    # our one line goes to the real stdout; anything a library prints goes to stderr
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    configure("error", "console", stream=sys.stderr)
    trio.run(main)


# -- measurements ------------------------------------------------------------------------------


@asynccontextmanager
async def process(args: list[str]) -> AsyncIterator[tuple[trio.Process, bytes]]:
    """A child process; yields it and its first stdout line; closes its stdin at the end."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        line = b""
        with trio.fail_after(30):
            while not line.endswith(b"\n"):
                chunk = await proc.stdout.receive_some(65536)
                if not chunk:
                    raise SystemExit(f"bench: {args} exited before it was ready")
                line += chunk
        yield proc, line.split(b"\n")[0]
    finally:
        with trio.move_on_after(5):
            await proc.stdin.aclose()
            await proc.wait()
        if proc.returncode is None:
            proc.kill()


async def rate(count: int, body: Callable[[int], Awaitable[None]], callers: int) -> float:
    """Round trips per second of ``body`` run ``count`` times by ``callers`` concurrent tasks."""
    per_caller = count // callers

    async def caller(index: int) -> None:
        for n in range(per_caller):
            await body(index * per_caller + n)

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for index in range(callers):
            nursery.start_soon(caller, index)
    return per_caller * callers / (time.perf_counter() - start)


async def raw_stream(
    host: Any, peer: Any, count: int, in_flight: int, *, tuned: bool = False
) -> float:
    """Echo round trips on one bare libp2p stream, one write per message."""
    from dms.network.p2p.host import batch_window_updates
    from dms.network.p2p.links import muxed

    opened = await host.new_stream(peer, [TUNED_PROTOCOL if tuned else RAW_PROTOCOL])
    stream = opened
    if tuned:
        batch_window_updates(opened)
        stream = muxed(opened)
    size = len(MESSAGE)
    window = trio.Semaphore(in_flight)
    finished = trio.Event()

    async def reader() -> None:
        received = 0
        while received < count * size:
            data = await stream.read(65536)
            before = received // size
            received += len(data)
            for _ in range(received // size - before):
                window.release()
        finished.set()

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        for _ in range(count):
            await window.acquire()
            await stream.write(MESSAGE)
        await finished.wait()
    elapsed = time.perf_counter() - start
    await opened.close()
    return count / elapsed


class FrameEcho:
    """Request/reply over P2PNetwork frames: each request carries a number the echo returns."""

    def __init__(self, network: Any, peer: str) -> None:
        self.network = network
        self.peer = peer
        self.waiting: dict[int, trio.Event] = {}

    async def on_frame(self, _peer: str, frame: bytes) -> None:
        event = self.waiting.pop(int.from_bytes(frame[:8], "big"), None)
        if event is not None:
            event.set()

    async def round_trip(self, n: int) -> None:
        event = trio.Event()
        self.waiting[n] = event
        await self.network.send(self.peer, n.to_bytes(8, "big") + MESSAGE[8:])
        await event.wait()


async def point_to_point(count: int, repeat: int) -> dict[str, float]:
    from libp2p.peer.id import ID

    from dms.actor import ActorSystem, Rate, RateLimitPolicy
    from dms.actor.handle import Address, Handle
    from dms.network.p2p import P2PNetwork, P2PSettings
    from dms.security import KeyPair, TrustContext

    key = KeyPair.generate()
    best: dict[str, float] = {}

    def keep(name: str, value: float) -> None:
        best[name] = max(best.get(name, 0.0), value)

    loopback = P2PSettings(listen=("/ip4/127.0.0.1/tcp/0",))
    server_args = [SCRIPT, "--serve", "--trust", key.did]
    tool_args = ["-m", "dms.network.p2p.tool", "--echo"]
    async with process(server_args) as (_server, line), process(tool_args) as (_tool, ready):
        served = msgspec.json.decode(line, type=Served)
        echo_address = msgspec.json.decode(ready)["addresses"][0]
        echo_peer = echo_address.split("/p2p/")[1]
        network = P2PNetwork(key.seed, loopback)
        unlimited = RateLimitPolicy(default=Rate(per_s=1e12, burst=10**12))
        trust = TrustContext(local_did=key.did, roots=[served.did])
        async with ActorSystem(key, network, trust=trust, rate_limits=unlimited) as system:
            await network.connect(served.address)
            frames_network = P2PNetwork(os.urandom(32), loopback)
            async with frames_network:
                await frames_network.connect(echo_address)
                echo = FrameEcho(frames_network, echo_peer)
                frames_network.on_receive(echo.on_frame)
                target = Handle(served.public_key, served.did, Address(served.peer_id, ECHO_INBOX))
                ping = Ping(1, "x" * 180)

                async def invoke(_n: int) -> None:
                    await system.invoke(target, "/bench/echo", ping, Pong)

                server_peer = ID.from_base58(served.peer_id)
                await invoke(0)  # warm up: the stream exists before timing
                await echo.round_trip(0)
                for _ in range(repeat):
                    keep(
                        "raw_stream_sequential_per_s",
                        await raw_stream(network.host, server_peer, count, 1),
                    )
                    keep(
                        "raw_stream_64_per_s",
                        await raw_stream(network.host, server_peer, count, IN_FLIGHT),
                    )
                    keep(
                        "raw_tuned_sequential_per_s",
                        await raw_stream(network.host, server_peer, count, 1, tuned=True),
                    )
                    keep(
                        "raw_tuned_64_per_s",
                        await raw_stream(network.host, server_peer, count, IN_FLIGHT, tuned=True),
                    )
                    keep("frames_sequential_per_s", await rate(count, echo.round_trip, 1))
                    keep("frames_64_per_s", await rate(count, echo.round_trip, IN_FLIGHT))
                    keep("invoke_sequential_per_s", await rate(count, invoke, 1))
                    keep("invoke_64_per_s", await rate(count, invoke, IN_FLIGHT))
    return best


async def broadcast(messages: int) -> dict[str, float]:
    """Latency from publish to delivery on 4 other nodes (5 in all), from their clocks."""
    from dms.network.p2p import P2PNetwork, P2PSettings
    from dms.network.p2p.tool import Message, Subscribe, WaitTopicPeers

    topic = "/dms/bench"
    network = P2PNetwork(os.urandom(32), P2PSettings(listen=("/ip4/127.0.0.1/tcp/0",)))
    latencies: list[float] = []
    async with network:

        async def ignore(_origin: str, _frame: bytes) -> None:
            return None

        await network.subscribe(topic, ignore)
        tool = ["-m", "dms.network.p2p.tool", f"--bootstrap={network.addresses()[0]}"]
        async with (
            process(tool) as (a, _),
            process(tool) as (b, _),
            process(tool) as (c, _),
            process(tool) as (d, _),
        ):
            procs = [a, b, c, d]
            encoder = msgspec.json.Encoder()
            for ident, proc in enumerate(procs):
                assert proc.stdin is not None
                await proc.stdin.send_all(encoder.encode(Subscribe(id=ident, topic=topic)) + b"\n")
                await proc.stdin.send_all(
                    encoder.encode(WaitTopicPeers(id=100 + ident, topic=topic, count=1)) + b"\n"
                )
            with trio.fail_after(30):
                while len(network.topic_peers(topic)) < NODES - 1:  # noqa: ASYNC110
                    await trio.sleep(0.02)
            await trio.sleep(1)  # let every subscriber's mesh settle before timing
            for _ in range(messages):
                await network.publish(topic, time.monotonic_ns().to_bytes(8, "big"))
                await trio.sleep(BROADCAST_INTERVAL_S)

            decoder = msgspec.json.Decoder(Message)

            async def collect(proc: trio.Process) -> None:
                assert proc.stdout is not None
                buffer, got = b"", 0
                with trio.move_on_after(20):
                    while got < messages:
                        buffer += await proc.stdout.receive_some(65536)
                        *lines, buffer = buffer.split(b"\n")
                        for line in lines:
                            if b'"event":"message"' not in line:
                                continue
                            message = decoder.decode(line)
                            sent = int.from_bytes(message.data, "big")
                            latencies.append((message.received_ns - sent) / 1e6)
                            got += 1

            async with trio.open_nursery() as nursery:
                for proc in procs:
                    nursery.start_soon(collect, proc)
    expected = messages * (NODES - 1)
    latencies.sort()
    return {
        "broadcast_delivered_ratio": len(latencies) / expected,
        "broadcast_p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "broadcast_p95_ms": latencies[int(len(latencies) * 0.95) - 1]
        if latencies
        else float("nan"),
        "broadcast_max_ms": latencies[-1] if latencies else float("nan"),
    }


async def dial_times(dials: int) -> dict[str, float]:
    """Connect to a fresh peer: py-libp2p's default host against P2PNetwork (median of dials)."""
    import multiaddr
    from libp2p import new_host
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.peer.peerinfo import info_from_p2p_addr

    from dms.network.p2p import P2PNetwork, P2PSettings

    loopback = P2PSettings(listen=("/ip4/127.0.0.1/tcp/0",))
    default_ms: list[float] = []
    ours_ms: list[float] = []
    async with process(["-m", "dms.network.p2p.tool"]) as (_tool, ready):
        address = msgspec.json.decode(ready)["addresses"][0]
        info = info_from_p2p_addr(multiaddr.Multiaddr(address))
        listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
        for _ in range(dials):
            host = new_host(key_pair=create_new_key_pair(os.urandom(32)), listen_addrs=listen)
            async with host.run(listen):
                start = time.perf_counter()
                await host.connect(info)
                default_ms.append((time.perf_counter() - start) * 1000)
            async with P2PNetwork(os.urandom(32), loopback) as network:
                start = time.perf_counter()
                await network.connect(address)
                ours_ms.append((time.perf_counter() - start) * 1000)
    default, ours = statistics.median(default_ms), statistics.median(ours_ms)
    return {
        "dial_default_host_ms": default,
        "dial_dms_ms": ours,
        "dial_speedup_ratio": default / ours,
    }


# -- report ------------------------------------------------------------------------------------


def report(results: dict[str, float], as_json: bool) -> None:
    raw_seq = results["raw_stream_sequential_per_s"]
    raw_64 = results["raw_stream_64_per_s"]
    results["frames_sequential_vs_raw_ratio"] = results["frames_sequential_per_s"] / raw_seq
    results["frames_64_vs_raw_ratio"] = results["frames_64_per_s"] / raw_64
    results["invoke_sequential_vs_raw_ratio"] = results["invoke_sequential_per_s"] / raw_seq
    results["invoke_64_vs_raw_ratio"] = results["invoke_64_per_s"] / raw_64
    results["invoke_sequential_vs_raw_tuned_ratio"] = (
        results["invoke_sequential_per_s"] / results["raw_tuned_sequential_per_s"]
    )
    if as_json:
        print(json.dumps({k: round(v, 3) for k, v in results.items()}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="network: two processes on loopback, 200-byte messages")
    table.add_column("workload")
    table.add_column("sequential", justify="right")
    table.add_column(f"{IN_FLIGHT} in flight", justify="right")
    table.add_column("vs raw (seq / 64)", justify="right")
    for name, key in (
        ("raw libp2p stream", "raw_stream"),
        ("raw stream, tuned like our links", "raw_tuned"),
        ("P2PNetwork frames", "frames"),
        ("signed invoke", "invoke"),
    ):
        seq, par = results[f"{key}_sequential_per_s"], results[f"{key}_64_per_s"]
        if key == "raw_stream":
            ratio = "baseline"
        elif key == "raw_tuned":
            ratio = f"{seq / raw_seq:.2f}x / {par / raw_64:.2f}x"
        else:
            ratio = (
                f"{results[f'{key}_sequential_vs_raw_ratio']:.2f}x / "
                f"{results[f'{key}_64_vs_raw_ratio']:.2f}x"
            )
        table.add_row(name, f"{seq:,.0f}/s", f"{par:,.0f}/s", ratio)
    console = Console()
    console.print(table)
    console.print(
        "signed invoke against the tuned raw stream, sequential: "
        f"{results['invoke_sequential_vs_raw_tuned_ratio']:.2f}x"
    )
    console.print(
        f"broadcast to {NODES - 1} nodes: p50 {results['broadcast_p50_ms']:.1f} ms, "
        f"p95 {results['broadcast_p95_ms']:.1f} ms, max {results['broadcast_max_ms']:.1f} ms, "
        f"delivered {results['broadcast_delivered_ratio']:.0%}"
    )
    console.print(
        f"dial: default py-libp2p host {results['dial_default_host_ms']:.0f} ms, "
        f"dms {results['dial_dms_ms']:.0f} ms ({results['dial_speedup_ratio']:.0f}x faster)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--count", type=int, default=3000, help="round trips per workload")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (best kept)")
    parser.add_argument("--broadcasts", type=int, default=60, help="messages broadcast")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--trust", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.trust)
        return

    from dms.log import configure

    configure("error", "console", stream=sys.stderr)
    logging.disable(logging.ERROR)  # the default libp2p host (dial baseline) is chatty

    async def run() -> dict[str, float]:
        results = await point_to_point(args.count, args.repeat)
        results.update(await broadcast(args.broadcasts))
        results.update(await dial_times(5))
        return results

    report(trio.run(run), args.json)


if __name__ == "__main__":
    main()
