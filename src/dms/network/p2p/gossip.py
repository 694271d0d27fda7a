"""Broadcast topics over gossipsub, with limits fitted to our traffic.

py-libp2p's gossipsub silently drops messages by default: spam protection allows 10 messages per
second per topic and peer, and each peer's outbound queue and each subscription's channel hold 32.
Here spam protection is raised to ``max_messages_per_topic_per_second``, the queues to
``outbound_queue`` / ``subscription_buffer`` (see :func:`dms.network.p2p.host.tune_pubsub`), and
:meth:`Gossip.publish` paces bursts: it waits while any peer's outbound queue is fuller than
``pace_at`` of its size, so a burst of publishes slows the publisher instead of being dropped.

Messages are signed by libp2p (strict signing: the origin peer id is authenticated) and pass the
topic's validator before they are delivered or forwarded; a validator that raises counts as a
rejection.
"""

from __future__ import annotations

import trio
from libp2p.abc import IHost, ISubscriptionAPI
from libp2p.custom_types import SyncValidatorFn
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from structlog.typing import FilteringBoundLogger

from dms.log import get_logger
from dms.network.base import FrameTooLarge, PeerID, TopicHandler, TopicValidator
from dms.network.p2p.host import tune_pubsub
from dms.network.p2p.settings import GossipSettings


def _log() -> FilteringBoundLogger:
    """A logger made at use, so that it follows the configuration set after import."""
    return get_logger(component="p2p.gossip")


MAX_MESSAGE = 512 * 1024
"""Largest frame published on a topic (gossipsub refuses RPCs over 1 MiB, signatures included)."""
PACE_POLL_S = 0.002
PACE_MAX_WAIT_S = 2.0
"""A peer whose queue stays full this long is not waited for (gossipsub drops for it)."""


class Gossip:
    """One Pubsub + GossipSub pair and the tasks that deliver each subscribed topic."""

    def __init__(self, host: IHost, settings: GossipSettings) -> None:
        tune_pubsub(settings)
        self._settings = settings
        self.router = GossipSub(
            protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11, PROTOCOL_ID],
            degree=settings.degree,
            degree_low=settings.degree_low,
            degree_high=settings.degree_high,
            heartbeat_initial_delay=0.1,
            heartbeat_interval=settings.heartbeat_s,
            spam_protection_enabled=True,
            max_messages_per_topic_per_second=float(settings.max_messages_per_topic_per_second),
        )
        self.pubsub = Pubsub(host, self.router, seen_ttl=settings.seen_ttl_s, strict_signing=True)
        self._scopes: dict[str, trio.CancelScope] = {}
        self._pace_limit = max(1, int(settings.outbound_queue * settings.pace_at))

    async def subscribe(
        self,
        nursery: trio.Nursery,
        topic: str,
        handler: TopicHandler,
        validator: TopicValidator | None,
    ) -> None:
        """Subscribe (or replace the handler and validator of) ``topic``."""
        await self.unsubscribe(topic)
        if validator is not None:
            self.pubsub.set_topic_validator(topic, _adapt(topic, validator), False)
        subscription = await self.pubsub.subscribe(topic)
        scope = trio.CancelScope()
        self._scopes[topic] = scope
        nursery.start_soon(self._deliver, topic, subscription, handler, scope)

    async def unsubscribe(self, topic: str) -> None:
        scope = self._scopes.pop(topic, None)
        if scope is not None:
            scope.cancel()
        self.pubsub.remove_topic_validator(topic)
        await self.pubsub.unsubscribe(topic)

    async def publish(self, topic: str, frame: bytes) -> None:
        if len(frame) > MAX_MESSAGE:
            raise FrameTooLarge(len(frame), MAX_MESSAGE)
        # The queues signal nothing when they drain: look every 2 ms, for 2 s at most.
        with trio.move_on_after(PACE_MAX_WAIT_S):
            while any(len(q) >= self._pace_limit for q in self.pubsub.peer_queues.values()):  # noqa: ASYNC110
                await trio.sleep(PACE_POLL_S)
        await self.pubsub.publish(topic, frame)

    def topic_peers(self, topic: str) -> list[PeerID]:
        """Directly connected peers known to be subscribed to ``topic``."""
        return sorted(p.to_base58() for p in self.pubsub.peer_topics.get(topic, ()))

    def topics(self) -> list[str]:
        return sorted(self._scopes)

    async def _deliver(
        self,
        topic: str,
        subscription: ISubscriptionAPI,
        handler: TopicHandler,
        scope: trio.CancelScope,
    ) -> None:
        with scope:
            while True:
                try:
                    message = await subscription.get()
                except (trio.EndOfChannel, trio.ClosedResourceError):
                    return
                origin = ID(message.from_id).to_base58()
                try:
                    await handler(origin, message.data)
                except Exception:
                    _log().exception("topic handler failed", topic=topic, origin=origin)


def _adapt(topic: str, validator: TopicValidator) -> SyncValidatorFn:
    """A libp2p validator (forwarder, message) over ours (origin, frame); raising rejects."""

    def validate(_forwarder: ID, message: rpc_pb2.Message) -> bool:
        try:
            return bool(validator(ID(message.from_id).to_base58(), message.data))
        except Exception:
            _log().warning("topic validator raised; message rejected", topic=topic, exc_info=True)
            return False

    return validate
