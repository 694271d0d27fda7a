"""Actor messaging in one process: dms against Thespian (in-process) and pykka, same run.

Workloads:

- send: N fire-and-forget messages to one actor, timed until the actor has handled them all.
- invoke: N request/reply round trips, one at a time.
- invoke x16: the same with 16 callers at once (dms only: Thespian's ``ask`` blocks).

Each round runs every workload once; the best of ``--repeat`` rounds is kept (the machine is
shared and noisy, and rounds interleave so noise does not favour one side).

dms runs the full receive pipeline on every message: audience, capability (a real
``TrustContext``), rate limit (enabled for the node's own key, with a budget that is never
reached), and for invokes a deadline. "plain" handlers are ``def`` (run inline when the actor
is idle); "async" handlers are ``async def`` (run in the actor's task). "signed" sends every
message through the wire path in-process: msgpack encoding, Ed25519 signature and verification,
replay check, JSON payload decoding.

Baselines: Thespian ``simpleSystemBase`` (``tell`` + a final ``ask``; ``ask``), pykka
``ThreadingActor`` (``tell`` + a final ``ask``; ``ask``).

    .venv/bin/python bench/actor.py [--json] [--messages N] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import anyio
import msgspec

from dms.actor import Actor, ActorSystem, Envelope, Rate, RateLimitPolicy, behavior
from dms.actor.envelope import Envelope as WireEnvelope
from dms.actor.handle import Address, Handle
from dms.network.memory import Fabric
from dms.security import KeyPair


class Ping(msgspec.Struct, frozen=True):
    n: int


class Pong(msgspec.Struct, frozen=True):
    n: int


class Target(Actor):
    def __init__(self) -> None:
        self.count = 0
        self.goal = 0
        self.done = anyio.Event()

    def _tick(self) -> None:
        self.count += 1
        if self.count == self.goal:
            self.done.set()

    @behavior("/bench/tell", Ping)
    def tell(self, message: Ping, envelope: Envelope) -> None:
        self._tick()

    @behavior("/bench/async-tell", Ping)
    async def async_tell(self, message: Ping, envelope: Envelope) -> None:
        self._tick()

    @behavior("/bench/echo", Ping, Pong)
    def echo(self, message: Ping, envelope: Envelope) -> Pong:
        return Pong(message.n)

    @behavior("/bench/async-echo", Ping, Pong)
    async def async_echo(self, message: Ping, envelope: Envelope) -> Pong:
        return Pong(message.n)


def dms(kind: str, path: str, count: int, *, signed: bool = False, callers: int = 1) -> float:
    """Messages (or round trips) per second for one dms workload."""
    result: list[float] = []

    async def main() -> None:
        policy = RateLimitPolicy(default=Rate(per_s=1e12, burst=10**12), exempt_local=False)
        node = ActorSystem(
            KeyPair.generate(),
            Fabric().network("bench"),
            rate_limits=policy,
            local_wire=signed,
            mailbox_capacity=4096,
        )
        async with node:
            handle = await node.spawn(Target, "target")
            target = node.actor("target")
            assert isinstance(target, Target)
            message = Ping(1)
            if kind == "send":
                target.goal = count
                start = time.perf_counter()
                for _ in range(count):
                    await node.send(handle, path, message)
                await target.done.wait()
                handled = count
            else:
                per_caller = count // callers

                async def caller() -> None:
                    for _ in range(per_caller):
                        await node.invoke(handle, path, message, Pong)

                start = time.perf_counter()
                if callers == 1:
                    await caller()
                else:
                    async with anyio.create_task_group() as tg:
                        for _ in range(callers):
                            tg.start_soon(caller)
                handled = per_caller * callers
            result.append(handled / (time.perf_counter() - start))
            refused = node.statistics().refusals
            if refused:
                raise SystemExit(f"bench: messages were refused: {refused}")

    anyio.run(main, backend="trio")
    return result[0]


def thespian(kind: str, count: int) -> float:
    from thespian.actors import Actor as ThespianActor
    from thespian.actors import ActorSystem as ThespianSystem

    class Echo(ThespianActor):  # type: ignore[misc]
        count = 0

        def receiveMessage(self, message: Any, sender: Any) -> None:
            if isinstance(message, Ping):
                self.count += 1
            elif isinstance(message, tuple) and message[0] == "ask":
                self.send(sender, Pong(message[1].n))
            elif message == "count":
                self.send(sender, self.count)

    system = ThespianSystem("simpleSystemBase")
    try:
        actor = system.createActor(Echo)
        message = Ping(1)
        start = time.perf_counter()
        if kind == "send":
            for _ in range(count):
                system.tell(actor, message)
            handled = system.ask(actor, "count", 60)
            if handled != count:
                raise SystemExit(f"bench: thespian handled {handled} of {count}")
        else:
            request = ("ask", message)
            for _ in range(count):
                system.ask(actor, request, 60)
        return count / (time.perf_counter() - start)
    finally:
        system.shutdown()


def pykka(kind: str, count: int) -> float:
    import pykka as pk

    class Echo(pk.ThreadingActor):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        def on_receive(self, message: Any) -> Any:
            if isinstance(message, Ping):
                self.count += 1
                return None
            if message == "count":
                return self.count
            return Pong(message[1].n)

    ref = Echo.start()
    try:
        message = Ping(1)
        start = time.perf_counter()
        if kind == "send":
            for _ in range(count):
                ref.tell(message)
            handled = ref.ask("count")
            if handled != count:
                raise SystemExit(f"bench: pykka handled {handled} of {count}")
        else:
            request = ("ask", message)
            for _ in range(count):
                ref.ask(request)
        return count / (time.perf_counter() - start)
    finally:
        ref.stop()


def envelope_codec(count: int, module: Any) -> float:
    """Encode + decode one envelope per iteration with msgspec ``module`` (msgpack or json)."""
    key = KeyPair.generate()
    handle = Handle(key.public_key.hex(), key.did, Address("peer-" + "a" * 32, "root"))
    envelope = WireEnvelope(
        handle,
        handle,
        "/dms/node/peers/ping",
        "0123abcd1f",
        1_700_000_000 * 10**9,
        "",
        "",
        b'{"n":1}',
    )
    encoder, decoder = module.Encoder(), module.Decoder(WireEnvelope)
    start = time.perf_counter()
    for _ in range(count):
        decoder.decode(encoder.encode(envelope))
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--messages", type=int, default=100_000, help="messages per workload")
    parser.add_argument("--repeat", type=int, default=3, help="runs per workload (best kept)")
    args = parser.parse_args()
    n, r = args.messages, args.repeat
    signed_n = max(1000, n // 20)

    workloads: dict[str, Callable[[], float]] = {
        "dms_send_per_s": lambda: dms("send", "/bench/tell", n),
        "dms_send_async_per_s": lambda: dms("send", "/bench/async-tell", n),
        "dms_send_signed_per_s": lambda: dms("send", "/bench/tell", signed_n, signed=True),
        "dms_invoke_per_s": lambda: dms("invoke", "/bench/echo", n),
        "dms_invoke_async_per_s": lambda: dms("invoke", "/bench/async-echo", n // 2),
        "dms_invoke_async_x16_per_s": lambda: dms("invoke", "/bench/async-echo", n, callers=16),
        "dms_invoke_signed_per_s": lambda: dms("invoke", "/bench/echo", signed_n // 2, signed=True),
        "thespian_send_per_s": lambda: thespian("send", n),
        "thespian_invoke_per_s": lambda: thespian("invoke", n),
        "pykka_send_per_s": lambda: pykka("send", n),
        "pykka_invoke_per_s": lambda: pykka("invoke", n // 2),
        "envelope_msgpack_roundtrip_per_s": lambda: envelope_codec(n, msgspec.msgpack),
        "envelope_json_roundtrip_per_s": lambda: envelope_codec(n, msgspec.json),
    }
    # Rounds interleave the workloads, so a noisy moment on a shared machine does not land on
    # one side of a comparison only.
    figures: dict[str, float] = {}
    for _ in range(r):
        for key, measure in workloads.items():
            figures[key] = max(figures.get(key, 0.0), measure())
    ratios = {
        "send_vs_thespian_ratio": figures["dms_send_per_s"] / figures["thespian_send_per_s"],
        "send_async_vs_thespian_ratio": figures["dms_send_async_per_s"]
        / figures["thespian_send_per_s"],
        "invoke_vs_thespian_ratio": figures["dms_invoke_per_s"] / figures["thespian_invoke_per_s"],
        "invoke_async_vs_thespian_ratio": figures["dms_invoke_async_per_s"]
        / figures["thespian_invoke_per_s"],
        "invoke_async_x16_vs_thespian_ratio": figures["dms_invoke_async_x16_per_s"]
        / figures["thespian_invoke_per_s"],
        "send_vs_pykka_ratio": figures["dms_send_per_s"] / figures["pykka_send_per_s"],
        "invoke_vs_pykka_ratio": figures["dms_invoke_per_s"] / figures["pykka_invoke_per_s"],
        "envelope_msgpack_vs_json_ratio": figures["envelope_msgpack_roundtrip_per_s"]
        / figures["envelope_json_roundtrip_per_s"],
    }
    if args.json:
        json.dump({**figures, **ratios, "messages": n, "repeat": r}, sys.stdout)
        print()
        return
    rows = [
        ("send, plain handler", "dms_send_per_s", "send_vs_thespian_ratio"),
        ("send, async handler", "dms_send_async_per_s", "send_async_vs_thespian_ratio"),
        ("send, signed + verified", "dms_send_signed_per_s", ""),
        ("invoke, plain handler", "dms_invoke_per_s", "invoke_vs_thespian_ratio"),
        ("invoke, async handler", "dms_invoke_async_per_s", "invoke_async_vs_thespian_ratio"),
        (
            "invoke, async, 16 callers",
            "dms_invoke_async_x16_per_s",
            "invoke_async_x16_vs_thespian_ratio",
        ),
        ("invoke, signed + verified", "dms_invoke_signed_per_s", ""),
        ("Thespian tell", "thespian_send_per_s", ""),
        ("Thespian ask", "thespian_invoke_per_s", ""),
        ("pykka tell", "pykka_send_per_s", ""),
        ("pykka ask", "pykka_invoke_per_s", ""),
        (
            "envelope msgpack encode+decode",
            "envelope_msgpack_roundtrip_per_s",
            "envelope_msgpack_vs_json_ratio",
        ),
        ("envelope JSON encode+decode", "envelope_json_roundtrip_per_s", ""),
    ]
    print(f"actor messaging in one process ({n} messages, best of {r})")
    print(f"{'workload':34} {'per second':>12} {'vs Thespian':>12}")
    for label, key, ratio in rows:
        shown = f"{ratios[ratio]:.2f}x" if ratio else ""
        print(f"{label:34} {figures[key]:12,.0f} {shown:>12}")
    print(
        f"goals: send >= 1.5x Thespian ({ratios['send_vs_thespian_ratio']:.2f}x), "
        f"invoke >= 1x Thespian ({ratios['invoke_vs_thespian_ratio']:.2f}x); "
        f"vs pykka: send {ratios['send_vs_pykka_ratio']:.2f}x, "
        f"invoke {ratios['invoke_vs_pykka_ratio']:.2f}x"
    )


if __name__ == "__main__":
    main()
