"""Every behavior a dms node serves on its root actor, by name, in one place.

The node's own behaviors are defined here; the others are defined beside the code that serves
them and listed here so that one module answers "what can I ask a node?":

==============================================  =============================================
group                                           served by
==============================================  =============================================
``/dms/node/status``, ``/dms/node/peers/*``,    :class:`dms.node.actor.NodeActor`
``/dms/node/allocations/list``, ``/public/*``
``/dms/node/onboarding/*``,                     :mod:`dms.onboarding.behaviors`
``/dms/node/resources/*``, ``/dms/node/hardware/*``
``/dms/node/deployment/*``                      the orchestrator (:mod:`dms.orchestrator.messages`)
``/dms/deployment/*`` (bids, commit, allocate)  the provider (:mod:`dms.jobs.protocol`)
``/dms/status`` adverts, ``/dms/deployment/heartbeats``  the orchestrator (:mod:`dms.jobs.protocol`)
``/dms/actor/stats``                            the actor system
==============================================  =============================================
"""

from __future__ import annotations

from dms.actor.system import STATS_BEHAVIOR as STATS_BEHAVIOR
from dms.jobs.protocol import ADVERT as ADVERT
from dms.jobs.protocol import ALLOCATE as ALLOCATE
from dms.jobs.protocol import BID_REQUEST as BID_REQUEST
from dms.jobs.protocol import COMMIT as COMMIT
from dms.jobs.protocol import HEARTBEATS as HEARTBEATS
from dms.jobs.protocol import REVERT as REVERT
from dms.onboarding.behaviors import BEHAVIORS as ONBOARDING
from dms.onboarding.behaviors import HARDWARE_SPEC as HARDWARE_SPEC
from dms.onboarding.behaviors import HARDWARE_USAGE as HARDWARE_USAGE
from dms.onboarding.behaviors import OFFBOARD as OFFBOARD
from dms.onboarding.behaviors import ONBOARD as ONBOARD
from dms.onboarding.behaviors import ONBOARDING_STATUS as ONBOARDING_STATUS
from dms.onboarding.behaviors import RESOURCES_ALLOCATED as RESOURCES_ALLOCATED
from dms.onboarding.behaviors import RESOURCES_FREE as RESOURCES_FREE
from dms.onboarding.behaviors import RESOURCES_ONBOARDED as RESOURCES_ONBOARDED
from dms.orchestrator.messages import DEPLOYMENT_EXPLAIN as DEPLOYMENT_EXPLAIN
from dms.orchestrator.messages import DEPLOYMENT_INFO as DEPLOYMENT_INFO
from dms.orchestrator.messages import DEPLOYMENT_LIST as DEPLOYMENT_LIST
from dms.orchestrator.messages import DEPLOYMENT_LOGS as DEPLOYMENT_LOGS
from dms.orchestrator.messages import DEPLOYMENT_NEW as DEPLOYMENT_NEW
from dms.orchestrator.messages import DEPLOYMENT_PRUNE as DEPLOYMENT_PRUNE
from dms.orchestrator.messages import DEPLOYMENT_RESULTS as DEPLOYMENT_RESULTS
from dms.orchestrator.messages import DEPLOYMENT_SHUTDOWN as DEPLOYMENT_SHUTDOWN
from dms.orchestrator.messages import DEPLOYMENT_STATUS as DEPLOYMENT_STATUS

NODE_STATUS = "/dms/node/status"
PEERS_LIST = "/dms/node/peers/list"
PEERS_SELF = "/dms/node/peers/self"
PEERS_PING = "/dms/node/peers/ping"
PEERS_CONNECT = "/dms/node/peers/connect"
ALLOCATIONS_LIST = "/dms/node/allocations/list"
PUBLIC_HELLO = "/public/hello"
PUBLIC_STATUS = "/public/status"

NODE = (
    NODE_STATUS,
    PEERS_LIST,
    PEERS_SELF,
    PEERS_PING,
    PEERS_CONNECT,
    ALLOCATIONS_LIST,
    PUBLIC_HELLO,
    PUBLIC_STATUS,
)
"""Served by the node actor itself."""

DEPLOYMENT = (
    DEPLOYMENT_NEW,
    DEPLOYMENT_LIST,
    DEPLOYMENT_STATUS,
    DEPLOYMENT_INFO,
    DEPLOYMENT_LOGS,
    DEPLOYMENT_RESULTS,
    DEPLOYMENT_SHUTDOWN,
    DEPLOYMENT_PRUNE,
    DEPLOYMENT_EXPLAIN,
)
"""The user's deployments (orchestrator side)."""

PROVIDER = (
    BID_REQUEST,
    COMMIT,
    ALLOCATE,
    REVERT,
)
"""What orchestrators ask a provider's root actor (the deployment protocol)."""

ORCHESTRATOR = (ADVERT, HEARTBEATS)
"""What providers send orchestrators' root actors (capacity adverts, heartbeats)."""

SYSTEM = (STATS_BEHAVIOR,)

ALL = (*NODE, *ONBOARDING, *DEPLOYMENT, *PROVIDER, *ORCHESTRATOR, *SYSTEM)
"""Every behavior a fully equipped node serves on its root actor (``ONBOARDING``: onboarding,
resources and hardware, from :mod:`dms.onboarding.behaviors`)."""
