"""The Node root actor (inbox ``root``): the node's behaviors in one place.

It serves its own behaviors (:data:`dms.node.behaviors.NODE`) from a :class:`NodeService`, and
on every start (the first, and any restart by the root supervisor) it asks each *registrar* to
put its behaviors on it: onboarding, the provider, the orchestrator. Behaviors registered at run
time would otherwise be lost when the root actor restarts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from dms.actor import Actor, Empty, Envelope, behavior
from dms.node import behaviors as names
from dms.node.messages import (
    AllocationList,
    ConnectReply,
    ConnectRequest,
    Hello,
    NodeStatus,
    PeerList,
    PeerSelf,
    PingReply,
    PingRequest,
    PublicStatus,
)
from dms.node.service import NodeService

Registrar = Callable[[Actor], None]
"""Puts a component's behaviors on the root actor (``ProviderService.register`` and the like)."""


class NodeActor(Actor):
    """The root actor of a dms node."""

    def __init__(self, service: NodeService, registrars: Sequence[Registrar] = ()) -> None:
        self.service = service
        self.registrars = registrars

    async def on_start(self) -> None:
        for register in self.registrars:
            register(self)

    @behavior(names.NODE_STATUS, Empty, NodeStatus)
    async def status(self, message: Empty, envelope: Envelope) -> NodeStatus:
        return await self.service.status()

    @behavior(names.PEERS_LIST, Empty, PeerList)
    def peers(self, message: Empty, envelope: Envelope) -> PeerList:
        return self.service.peers()

    @behavior(names.PEERS_SELF, Empty, PeerSelf)
    def peers_self(self, message: Empty, envelope: Envelope) -> PeerSelf:
        return self.service.self_info()

    @behavior(names.PEERS_PING, PingRequest, PingReply, concurrent=True)
    async def ping(self, message: PingRequest, envelope: Envelope) -> PingReply:
        return await self.service.ping(message)

    @behavior(names.PEERS_CONNECT, ConnectRequest, ConnectReply, concurrent=True)
    async def connect(self, message: ConnectRequest, envelope: Envelope) -> ConnectReply:
        return await self.service.connect(message)

    @behavior(names.ALLOCATIONS_LIST, Empty, AllocationList)
    def allocations(self, message: Empty, envelope: Envelope) -> AllocationList:
        return AllocationList(allocations=self.service.allocations())

    @behavior(names.PUBLIC_HELLO, Empty, Hello)
    def hello(self, message: Empty, envelope: Envelope) -> Hello:
        return self.service.hello()

    @behavior(names.PUBLIC_STATUS, Empty, PublicStatus)
    async def public_status(self, message: Empty, envelope: Envelope) -> PublicStatus:
        return await self.service.public_status()
