"""Real p2p nodes as separate processes (``python -m dms.network.p2p.tool``), driven from trio.

``async with cluster(tmp_path) as c: node = await c.start()`` launches a node on 127.0.0.1 port 0
(or in a network namespace), waits for its ``ready`` line, and gives a handle whose ``call()``
sends one command and waits for its result. Frames and topic messages a node prints arrive on
``node.frames`` / ``node.messages``. Every process is killed when the block ends.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import trio

from dms.network.p2p.tool import Command, Event, Frame, Message, Ready, Result

START_TIMEOUT_S = 20.0
CALL_TIMEOUT_S = 30.0
"""How long any one command or wait may take before the test fails (no command needs it)."""
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)


class NodeFailed(AssertionError):
    """A node process died, printed garbage, or a command failed when it should not."""


class Node:
    """One node process: its identity, its addresses, and a command channel."""

    def __init__(self, name: str, process: trio.Process, log_file: Path) -> None:
        self.name = name
        self.process = process
        self.log_file = log_file
        self.peer_id = ""
        self.addresses: list[str] = []
        self._ids = itertools.count(1)
        self._results: dict[int, trio.MemorySendChannel[Result]] = {}
        self._ready = trio.Event()
        self._frames_send, self.frames = trio.open_memory_channel[Frame](10_000)
        self._messages_send, self.messages = trio.open_memory_channel[Message](10_000)

    @property
    def address(self) -> str:
        return self.addresses[0]

    async def call(self, command: Command) -> Result:
        """Send a command; return its result (``ok`` or not)."""
        ident = next(self._ids)
        send, receive = trio.open_memory_channel[Result](1)
        self._results[ident] = send
        line = _encoder.encode(msgspec.structs.replace(command, id=ident)) + b"\n"
        assert self.process.stdin is not None
        try:
            with trio.fail_after(CALL_TIMEOUT_S):
                await self.process.stdin.send_all(line)
                return await receive.receive()
        except trio.TooSlowError:
            raise NodeFailed(f"{self.name}: no answer to {command!r}\n{self.log_tail()}") from None
        finally:
            self._results.pop(ident, None)

    async def ok(self, command: Command) -> Any:
        """Send a command that must succeed; return its value."""
        result = await self.call(command)
        if not result.ok:
            raise NodeFailed(f"{self.name}: {command!r} failed: {result.error}\n{self.log_tail()}")
        return result.value

    async def next_frame(self) -> Frame:
        with trio.fail_after(CALL_TIMEOUT_S):
            return await self.frames.receive()

    async def next_message(self) -> Message:
        with trio.fail_after(CALL_TIMEOUT_S):
            return await self.messages.receive()

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()

    async def wait_exit(self) -> int:
        return await self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def _read_events(self) -> None:
        assert self.process.stdout is not None
        buffer = b""
        async for chunk in self.process.stdout:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                self._dispatch(_decoder.decode(line))
        self._frames_send.close()
        self._messages_send.close()

    def _dispatch(self, event: Event) -> None:
        match event:
            case Ready(peer_id=peer_id, addresses=addresses):
                self.peer_id, self.addresses = peer_id, addresses
                self._ready.set()
            case Result(id=ident):
                channel = self._results.get(ident)
                if channel is not None:
                    channel.send_nowait(event)
            case Frame():
                self._frames_send.send_nowait(event)
            case Message():
                self._messages_send.send_nowait(event)


class Cluster:
    """Starts node processes in a nursery it owns; kills them all on exit."""

    def __init__(self, nursery: trio.Nursery, log_dir: Path) -> None:
        self._nursery = nursery
        self._log_dir = log_dir
        self._count = itertools.count()
        self.nodes: list[Node] = []

    async def start(
        self,
        *,
        listen: Sequence[str] = ("/ip4/127.0.0.1/tcp/0",),
        bootstrap: Sequence[str] = (),
        seed: bytes | None = None,
        netns: str | None = None,
        extra: Sequence[str] = (),
    ) -> Node:
        index = next(self._count)
        name = f"node{index}"
        args = [sys.executable, "-m", "dms.network.p2p.tool"]
        args += [f"--listen={a}" for a in listen]
        args += [f"--bootstrap={a}" for a in bootstrap]
        args += [f"--seed={(seed or os.urandom(32)).hex()}", *extra]
        if netns is not None:
            args = ["ip", "netns", "exec", netns, *args]
        log_file = self._log_dir / f"{name}.{len(self.nodes)}.log"
        with log_file.open("wb") as log:
            process = await trio.lowlevel.open_process(
                args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log
            )
        node = Node(name, process, log_file)
        self.nodes.append(node)
        self._nursery.start_soon(node._read_events)
        try:
            with trio.fail_after(START_TIMEOUT_S):
                await node._ready.wait()
        except trio.TooSlowError:
            node.kill()
            raise NodeFailed(f"{name} did not start\n{node.log_tail()}") from None
        return node

    async def start_many(self, count: int, **options: Any) -> list[Node]:
        """Start ``count`` nodes with the same options, concurrently (start-up is mostly import)."""
        started: dict[int, Node] = {}

        async def one(index: int) -> None:
            started[index] = await self.start(**options)

        async with trio.open_nursery() as nursery:
            for index in range(count):
                nursery.start_soon(one, index)
        return [started[i] for i in range(count)]

    async def restart(self, node: Node, seed: bytes, **options: Any) -> Node:
        """Kill ``node`` and start a new process with the same seed and listen address."""
        node.kill()
        await node.wait_exit()
        listen = [a.split("/p2p/")[0] for a in node.addresses]
        return await self.start(listen=listen, seed=seed, **options)


@asynccontextmanager
async def cluster(log_dir: Path) -> AsyncIterator[Cluster]:
    async with trio.open_nursery() as nursery:
        nodes = Cluster(nursery, log_dir)
        try:
            yield nodes
        finally:
            for node in nodes.nodes:
                node.kill()
            with trio.move_on_after(5):
                for node in nodes.nodes:
                    await node.wait_exit()
            nursery.cancel_scope.cancel()
