"""An in-process ``Network``: many nodes on one shared :class:`Fabric`.

The fabric is the medium: it knows every running node, the links between them (latency, loss),
partitions, and topic subscriptions. Each :class:`MemoryNetwork` is one node's view of it and
implements :class:`dms.network.Network`.

How a frame travels::

    send(peer, frame) --[link full? wait]--[partitioned? PeerUnreachable]--[lost? gone]-->
        receiver's inbound queue (ordered by arrival time, FIFO per link)
            --> receiver's delivery task --> on_receive handler

- Latency is per directed link and measured on the event loop's clock, so trio's mock clock
  makes a 200 ms link cost no real time.
- Loss draws from the fabric's seeded ``random.Random``: the same seed loses the same frames.
- Backpressure: at most ``link_capacity`` direct frames per link are in flight; ``send`` waits
  for room. Each link has its own budget, so one flooding peer fills only its own link.
- Topic frames never block the publisher: a subscriber whose topic queue is full drops the frame
  (counted as ``overflow``). A publisher's own validator runs first (a frame it rejects goes
  nowhere); each subscriber's validator runs before its handler.
- A partition drops frames already in flight across it, and refuses new ones.

One delivery task per node, owned by the node's task group: thousands of nodes fit in one
process. A handler that raises stops that node's network (the error surfaces when its
``async with`` block exits).
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Iterable
from types import TracebackType
from typing import Self

import anyio
import msgspec
from anyio.abc import TaskGroup

from dms.network.base import (
    FrameTooLarge,
    NetworkClosed,
    NetworkState,
    PeerID,
    PeerInfo,
    PeerUnreachable,
    ReceiveHandler,
    TopicHandler,
    TopicValidator,
)
from dms.types.ids import new_id

ADDRESS_PREFIX = "/memory/"
DEFAULT_MAX_FRAME = 4 * 1024 * 1024
NS_PER_S = 1_000_000_000


class LinkSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Properties of a directed link: one-way latency and the probability a frame is lost."""

    latency_ns: int = 0
    loss: float = 0.0

    def __post_init__(self) -> None:
        if self.latency_ns < 0:
            raise ValueError(f"latency_ns: {self.latency_ns} is negative; accepted: >= 0")
        if not 0.0 <= self.loss <= 1.0:
            raise ValueError(f"loss: {self.loss} is not a probability between 0 and 1")


class LinkStats(msgspec.Struct, frozen=True, kw_only=True):
    """What happened on one directed link (direct frames and topic frames together)."""

    sent: int = 0
    delivered: int = 0
    lost: int = 0
    partitioned: int = 0
    overflow: int = 0
    invalid: int = 0


class _Counters:
    __slots__ = ("delivered", "invalid", "lost", "overflow", "partitioned", "sent")

    def __init__(self) -> None:
        self.sent = self.delivered = self.lost = 0
        self.partitioned = self.overflow = self.invalid = 0

    def snapshot(self) -> LinkStats:
        return LinkStats(
            sent=self.sent,
            delivered=self.delivered,
            lost=self.lost,
            partitioned=self.partitioned,
            overflow=self.overflow,
            invalid=self.invalid,
        )


class Fabric:
    """The shared medium for any number of :class:`MemoryNetwork` nodes in one process."""

    def __init__(
        self,
        *,
        seed: int = 0,
        default_link: LinkSpec | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        link_capacity: int = 256,
        topic_capacity: int = 1024,
    ) -> None:
        if link_capacity < 1 or topic_capacity < 1:
            raise ValueError("link_capacity and topic_capacity must be at least 1")
        self.random = random.Random(seed)
        self.default_link = default_link or LinkSpec()
        self.max_frame = max_frame
        self.link_capacity = link_capacity
        self.topic_capacity = topic_capacity
        self._nodes: dict[PeerID, MemoryNetwork] = {}
        self._links: dict[tuple[PeerID, PeerID], LinkSpec] = {}
        self._counters: dict[tuple[PeerID, PeerID], _Counters] = {}
        self._group: dict[PeerID, int] = {}
        self._topics: dict[str, dict[PeerID, MemoryNetwork]] = {}

    # -- nodes ---------------------------------------------------------------------------------

    def network(self, peer_id: PeerID | None = None) -> MemoryNetwork:
        """A new node on this fabric (it joins when its ``async with`` block starts)."""
        return MemoryNetwork(self, peer_id or new_id("peer"))

    def running(self) -> list[PeerID]:
        return list(self._nodes)

    def _join(self, node: MemoryNetwork) -> None:
        if node.peer_id in self._nodes:
            raise NetworkClosed(f"peer id {node.peer_id} is already running on this fabric")
        self._nodes[node.peer_id] = node

    def _leave(self, node: MemoryNetwork) -> None:
        if self._nodes.get(node.peer_id) is node:
            del self._nodes[node.peer_id]
        for subscribers in self._topics.values():
            if subscribers.get(node.peer_id) is node:
                del subscribers[node.peer_id]

    # -- links and partitions ------------------------------------------------------------------

    def set_link(self, a: PeerID, b: PeerID, spec: LinkSpec, *, symmetric: bool = True) -> None:
        """Set the link a -> b (and b -> a when ``symmetric``)."""
        self._links[(a, b)] = spec
        if symmetric:
            self._links[(b, a)] = spec

    def link(self, a: PeerID, b: PeerID) -> LinkSpec:
        return self._links.get((a, b), self.default_link)

    def partition(self, *groups: Iterable[PeerID]) -> None:
        """Split the listed peers into groups that cannot reach each other (replaces any
        earlier partition). Peers not listed reach everyone."""
        self._group = {peer: index for index, group in enumerate(groups) for peer in group}

    def heal(self) -> None:
        self._group = {}

    def reachable(self, a: PeerID, b: PeerID) -> bool:
        group_a = self._group.get(a)
        group_b = self._group.get(b)
        return group_a is None or group_b is None or group_a == group_b

    def stats(self, a: PeerID, b: PeerID) -> LinkStats:
        counters = self._counters.get((a, b))
        return counters.snapshot() if counters else LinkStats()

    def _count(self, a: PeerID, b: PeerID) -> _Counters:
        counters = self._counters.get((a, b))
        if counters is None:
            counters = self._counters[(a, b)] = _Counters()
        return counters

    def _lost(self, spec: LinkSpec) -> bool:
        return spec.loss > 0.0 and self.random.random() < spec.loss


class _InLink:
    """Receiver-side state of one incoming link: frames in flight and the sender waiting for room."""

    __slots__ = ("inflight", "last_at", "space")

    def __init__(self) -> None:
        self.inflight = 0
        self.last_at = 0.0
        self.space: anyio.Event | None = None


_DIRECT = ""


def _only(group: BaseExceptionGroup[BaseException], error: BaseException | None) -> bool:
    """Whether ``group`` holds nothing but ``error`` (however deeply nested)."""
    leaves = group.exceptions
    while len(leaves) == 1 and isinstance(leaves[0], BaseExceptionGroup):
        leaves = leaves[0].exceptions
    return error is not None and len(leaves) == 1 and leaves[0] is error


class MemoryNetwork:
    """One node on a :class:`Fabric`. Implements :class:`dms.network.Network`."""

    def __init__(self, fabric: Fabric, peer_id: PeerID) -> None:
        self._fabric = fabric
        self._peer_id = peer_id
        self.state = NetworkState.NEW
        self._handler: ReceiveHandler | None = None
        self._subscriptions: dict[str, tuple[TopicHandler, TopicValidator | None]] = {}
        self._connected: set[PeerID] = set()
        # (arrival time, sequence, sender, topic or "" for direct, frame)
        self._inbound: list[tuple[float, int, PeerID, str, bytes]] = []
        self._sequence = itertools.count()
        self._links: dict[PeerID, _InLink] = {}
        self._topic_queued = 0
        self._wake = anyio.Event()
        self._task_group: TaskGroup | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def peer_id(self) -> PeerID:
        return self._peer_id

    def addresses(self) -> list[str]:
        return [ADDRESS_PREFIX + self._peer_id]

    async def __aenter__(self) -> Self:
        if self.state is not NetworkState.NEW:
            raise NetworkClosed(f"network {self._peer_id} is {self.state.value}; it is used once")
        self._fabric._join(self)
        self.state = NetworkState.RUNNING
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        task_group.start_soon(self._deliver_loop)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._shutdown()
        task_group, self._task_group = self._task_group, None
        if task_group is not None:
            task_group.cancel_scope.cancel()
            try:
                await task_group.__aexit__(exc_type, exc, tb)
            except BaseExceptionGroup as group:
                if not _only(group, exc):
                    raise
                # The body's own error, merely wrapped: let it propagate as it was raised.

    def _shutdown(self) -> None:
        if self.state is NetworkState.STOPPED:
            return
        self.state = NetworkState.STOPPED
        self._fabric._leave(self)
        self._inbound.clear()
        for link in self._links.values():
            if link.space is not None:
                link.space.set()
        self._wake.set()

    def _require_running(self) -> None:
        if self.state is not NetworkState.RUNNING:
            raise NetworkClosed(f"network {self._peer_id} is {self.state.value}, not running")

    # -- direct frames -------------------------------------------------------------------------

    def on_receive(self, handler: ReceiveHandler) -> None:
        self._handler = handler

    def authenticated_did(self, peer: PeerID) -> str | None:
        """Always None: the fabric authenticates nothing (any node may claim any name), so the
        actor layer verifies every envelope signature, in simulations too."""
        return None

    async def send(self, peer: PeerID, frame: bytes) -> None:
        self._require_running()
        fabric = self._fabric
        if len(frame) > fabric.max_frame:
            raise FrameTooLarge(len(frame), fabric.max_frame)
        counters = fabric._count(self._peer_id, peer)
        target = self._target(peer, counters)
        link = target._links.get(self._peer_id)
        if link is None:
            link = target._links[self._peer_id] = _InLink()
        while link.inflight >= fabric.link_capacity:
            if link.space is None:
                link.space = anyio.Event()
            await link.space.wait()
            self._require_running()
            target = self._target(peer, counters)
        counters.sent += 1
        spec = fabric.link(self._peer_id, peer)
        if fabric._lost(spec):
            counters.lost += 1
            return
        self._connected.add(peer)
        target._connected.add(self._peer_id)
        link.inflight += 1
        at = max(anyio.current_time() + spec.latency_ns / NS_PER_S, link.last_at)
        link.last_at = at
        target._enqueue(at, self._peer_id, _DIRECT, frame)

    def ready(self, peer: PeerID) -> bool:
        target = self._fabric._nodes.get(peer)
        if self.state is not NetworkState.RUNNING or target is None:
            return False
        link = target._links.get(self._peer_id)
        return link is None or link.inflight < self._fabric.link_capacity

    def _target(self, peer: PeerID, counters: _Counters) -> MemoryNetwork:
        target = self._fabric._nodes.get(peer)
        if target is None or target.state is not NetworkState.RUNNING:
            raise PeerUnreachable(peer, "no running node with this peer id on the fabric")
        if not self._fabric.reachable(self._peer_id, peer):
            counters.partitioned += 1
            raise PeerUnreachable(peer, "partitioned")
        return target

    def _enqueue(self, at: float, sender: PeerID, topic: str, frame: bytes) -> None:
        heapq.heappush(self._inbound, (at, next(self._sequence), sender, topic, frame))
        self._wake.set()

    # -- topics --------------------------------------------------------------------------------

    async def publish(self, topic: str, frame: bytes) -> None:
        self._require_running()
        fabric = self._fabric
        if len(frame) > fabric.max_frame:
            raise FrameTooLarge(len(frame), fabric.max_frame)
        own = self._subscriptions.get(topic)
        if own is not None and own[1] is not None and not own[1](self._peer_id, frame):
            fabric._count(self._peer_id, self._peer_id).invalid += 1
            return
        now = anyio.current_time()
        for peer, target in list(fabric._topics.get(topic, {}).items()):
            counters = fabric._count(self._peer_id, peer)
            counters.sent += 1
            if not fabric.reachable(self._peer_id, peer):
                counters.partitioned += 1
                continue
            spec = fabric.link(self._peer_id, peer) if peer != self._peer_id else LinkSpec()
            if fabric._lost(spec):
                counters.lost += 1
                continue
            if target._topic_queued >= fabric.topic_capacity:
                counters.overflow += 1
                continue
            target._topic_queued += 1
            target._enqueue(now + spec.latency_ns / NS_PER_S, self._peer_id, topic, frame)
        await anyio.lowlevel.checkpoint()

    async def subscribe(
        self, topic: str, handler: TopicHandler, validator: TopicValidator | None = None
    ) -> None:
        self._require_running()
        self._subscriptions[topic] = (handler, validator)
        self._fabric._topics.setdefault(topic, {})[self._peer_id] = self

    async def unsubscribe(self, topic: str) -> None:
        self._subscriptions.pop(topic, None)
        subscribers = self._fabric._topics.get(topic)
        if subscribers is not None and subscribers.get(self._peer_id) is self:
            del subscribers[self._peer_id]

    # -- peers ---------------------------------------------------------------------------------

    def peers(self) -> list[PeerInfo]:
        fabric = self._fabric
        return [
            PeerInfo(
                peer_id=peer,
                addresses=(ADDRESS_PREFIX + peer,),
                connected=True,
                rtt_ms=self._rtt_ns(peer) / 1e6,
            )
            for peer in sorted(self._connected)
            if peer in fabric._nodes and fabric.reachable(self._peer_id, peer)
        ]

    def _rtt_ns(self, peer: PeerID) -> int:
        fabric = self._fabric
        return (
            fabric.link(self._peer_id, peer).latency_ns
            + fabric.link(peer, self._peer_id).latency_ns
        )

    async def connect(self, address: str) -> PeerID:
        self._require_running()
        if not address.startswith(ADDRESS_PREFIX) or len(address) == len(ADDRESS_PREFIX):
            raise PeerUnreachable(
                address, f"not a memory address; accepted: {ADDRESS_PREFIX}<peer>"
            )
        peer = address[len(ADDRESS_PREFIX) :]
        target = self._target(peer, self._fabric._count(self._peer_id, peer))
        await anyio.sleep(self._rtt_ns(peer) / NS_PER_S)
        self._connected.add(peer)
        target._connected.add(self._peer_id)
        return peer

    async def ping(self, peer: PeerID) -> float:
        self._require_running()
        self._target(peer, self._fabric._count(self._peer_id, peer))
        rtt = self._rtt_ns(peer) / NS_PER_S
        await anyio.sleep(rtt)
        return rtt

    async def find(self, peer: PeerID) -> PeerInfo:
        self._require_running()
        await anyio.lowlevel.checkpoint()
        if peer not in self._fabric._nodes:
            raise PeerUnreachable(peer, "not found on the fabric")
        return PeerInfo(
            peer_id=peer, addresses=(ADDRESS_PREFIX + peer,), connected=peer in self._connected
        )

    # -- delivery ------------------------------------------------------------------------------

    async def _deliver_loop(self) -> None:
        inbound = self._inbound
        while self.state is NetworkState.RUNNING:
            if not inbound:
                self._wake = anyio.Event()
                await self._wake.wait()
                continue
            delay = inbound[0][0] - anyio.current_time()
            if delay > 0:
                self._wake = anyio.Event()
                with anyio.move_on_after(delay):
                    await self._wake.wait()
                continue
            _, _, sender, topic, frame = heapq.heappop(inbound)
            await self._deliver(sender, topic, frame)

    async def _deliver(self, sender: PeerID, topic: str, frame: bytes) -> None:
        fabric = self._fabric
        counters = fabric._count(sender, self._peer_id)
        if topic:
            self._topic_queued -= 1
        else:
            link = self._links[sender]
            link.inflight -= 1
            if link.space is not None:
                link.space.set()
                link.space = None
        if not fabric.reachable(sender, self._peer_id):
            counters.partitioned += 1
            return
        if topic:
            subscription = self._subscriptions.get(topic)
            if subscription is None:
                return
            handler, validator = subscription
            if validator is not None and not validator(sender, frame):
                counters.invalid += 1
                return
            counters.delivered += 1
            await handler(sender, frame)
            return
        if self._handler is None:
            return
        counters.delivered += 1
        await self._handler(sender, frame)
