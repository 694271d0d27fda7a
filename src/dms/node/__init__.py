"""The node: its root actor, the behaviors it serves, and their messages.

Layers: ``behaviors`` (every behavior name of a node), ``messages`` (the node's own requests and
replies), ``identity`` (peer id <-> DID without libp2p), ``service`` (what the node's behaviors
do), ``actor`` (the root actor that serves them and hosts the other components' behaviors).
Must not import: dms.app, dms.api, dms.cli.
"""

from dms.node.actor import NodeActor, Registrar
from dms.node.messages import (
    AllocationList,
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
from dms.node.service import NodeService

__all__ = [
    "AllocationList",
    "ConnectReply",
    "ConnectRequest",
    "Hello",
    "NodeActor",
    "NodeService",
    "NodeStatus",
    "PeerEntry",
    "PeerList",
    "PeerSelf",
    "PingReply",
    "PingRequest",
    "PublicStatus",
    "Registrar",
]
