"""What the node's own behaviors do: status, peers, hello. Plain async methods, no actor.

:class:`NodeService` is shared by the root actor's behaviors (:mod:`dms.node.actor`) and by
the REST API, which calls :meth:`ping` and :meth:`connect` directly: they wait on the network
for up to ``peer_timeout_s``, and the root actor handles one message at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import anyio

from dms.clock import Clock, RealClock
from dms.jobs.protocol import AllocationState
from dms.network.base import Network, PeerUnreachable
from dms.node.identity import did_from_peer_id, peer_of
from dms.node.messages import (
    ConnectReply,
    ConnectRequest,
    Hello,
    NodeStatus,
    PeerEntry,
    PeerList,
    PeerSelf,
    PingReply,
    PingRequest,
    PublicStatus,
)
from dms.resources.manager import ResourceManager

AllocationsSource = Callable[[], Sequence[AllocationState]]

DEFAULT_PEER_TIMEOUT_S = 10.0


class NodeService:
    """The node's identity and peers, over its network and resource store."""

    def __init__(
        self,
        *,
        did: str,
        network: Network,
        version: str,
        manager: ResourceManager | None = None,
        allocations: AllocationsSource | None = None,
        executors: Callable[[], Sequence[str]] = tuple,
        clock: Clock | None = None,
        peer_timeout_s: float = DEFAULT_PEER_TIMEOUT_S,
    ) -> None:
        self.did = did
        self.network = network
        self.version = version
        self.manager = manager
        self.allocations_source = allocations
        self.executors = executors
        self.clock = clock or RealClock()
        self.peer_timeout_s = peer_timeout_s
        self.api_url = ""
        self._started = time.monotonic()

    @property
    def peer_id(self) -> str:
        return self.network.peer_id

    def uptime_s(self) -> float:
        return round(time.monotonic() - self._started, 3)

    def addresses(self) -> tuple[str, ...]:
        return tuple(self.network.addresses())

    def allocations(self) -> tuple[AllocationState, ...]:
        return tuple(self.allocations_source()) if self.allocations_source else ()

    async def _onboarded(self) -> tuple[bool, bool]:
        if self.manager is None:
            return False, False
        pools = await self.manager.pools()
        return pools.is_onboarded, pools.draining

    async def status(self) -> NodeStatus:
        onboarded, draining = await self._onboarded()
        return NodeStatus(
            did=self.did,
            peer_id=self.peer_id,
            addresses=self.addresses(),
            version=self.version,
            onboarded=onboarded,
            draining=draining,
            peers=len(self.network.peers()),
            allocations=sum(1 for a in self.allocations() if not a.status.final),
            executors=tuple(self.executors()),
            uptime_s=self.uptime_s(),
            api_url=self.api_url,
        )

    async def public_status(self) -> PublicStatus:
        onboarded, _ = await self._onboarded()
        return PublicStatus(
            did=self.did,
            peer_id=self.peer_id,
            version=self.version,
            onboarded=onboarded,
            peers=len(self.network.peers()),
            uptime_s=self.uptime_s(),
        )

    def hello(self) -> Hello:
        return Hello(
            did=self.did, peer_id=self.peer_id, version=self.version, time_ns=self.clock.now_ns()
        )

    def peers(self) -> PeerList:
        return PeerList(
            peers=tuple(
                PeerEntry.of(info, did_from_peer_id(info.peer_id)) for info in self.network.peers()
            )
        )

    def self_info(self) -> PeerSelf:
        return PeerSelf(peer_id=self.peer_id, did=self.did, addresses=self.addresses())

    async def ping(self, request: PingRequest) -> PingReply:
        """Round trip to a peer (by peer id or DID); PeerUnreachable after ``peer_timeout_s``."""
        peer = peer_of(request.peer)
        with anyio.move_on_after(self.peer_timeout_s):
            rtt = await self.network.ping(peer)
            return PingReply(peer_id=peer, rtt_ms=round(rtt * 1000, 3))
        raise PeerUnreachable(peer, f"no answer to a ping within {self.peer_timeout_s:g} s")

    async def connect(self, request: ConnectRequest) -> ConnectReply:
        with anyio.move_on_after(self.peer_timeout_s):
            return ConnectReply(peer_id=await self.network.connect(request.address))
        raise PeerUnreachable(request.address, f"not connected within {self.peer_timeout_s:g} s")
