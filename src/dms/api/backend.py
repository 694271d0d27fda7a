"""What the REST routes call: the node's behaviors, through its actor system.

Every route invokes a behavior of the node's root actor (in process: no encoding, no
signature, the same checks), typed with the same msgspec Structs the behaviors use. Peer ping
and connect go to :class:`dms.node.NodeService` directly: they wait on the network, and the
root actor handles one message at a time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from dms.actor import ActorSystem
from dms.node import NodeService

R = TypeVar("R")
Waiter = Callable[[str, float], Awaitable[None]]
"""Returns when a deployment's status changes, or after the timeout (the orchestrator's
``wait_for_update``)."""


class NodeBackend:
    def __init__(
        self, system: ActorSystem, node: NodeService, *, waiter: Waiter | None = None
    ) -> None:
        self.system = system
        self.node = node
        self.waiter = waiter

    async def call(self, behavior: str, message: Any, response: type[R]) -> R:
        system = self.system
        return await system.invoke(system.root, behavior, message, response)

    def serves(self, behavior: str) -> bool:
        """Whether the root actor has ``behavior`` now (an orchestrator-less node has none of
        the deployment behaviors)."""
        try:
            cell = self.system.actor("root").cell
        except Exception:
            return False
        return behavior in cell.behaviors
