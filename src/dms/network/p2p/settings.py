"""Settings of the libp2p network: what the config file says, plus limits fitted to our traffic.

``P2PSettings.from_config`` reads the ``[network]`` section (listen addresses, bootstrap peers,
mDNS, maximum frame) and adds bootstrap peers given on the command line. Everything else has
defaults chosen from measurements (see the package README): change them in code, not per node.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

import msgspec

from dms.config import NetworkConfig
from dms.network.p2p.errors import ADDRESS_FORM, LISTEN_FORM, InvalidAddress
from dms.types.units import parse_size

Positive = Annotated[int, msgspec.Meta(gt=0)]
_MS = 1_000_000
_S = 1_000_000_000


class GossipSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Gossipsub limits. py-libp2p's defaults drop traffic (10 msg/s per topic, 32-entry queues)."""

    degree: Positive = 6
    degree_low: Positive = 4
    degree_high: Positive = 12
    heartbeat_s: Positive = 1
    max_messages_per_topic_per_second: Positive = 100_000
    outbound_queue: Positive = 4096
    """RPCs queued per peer before gossipsub drops; publish() waits below ``pace_at`` of it."""
    pace_at: float = 0.5
    subscription_buffer: Positive = 4096
    """Messages delivered but not yet handled, per topic, before gossipsub drops."""
    seen_ttl_s: Positive = 120


class P2PSettings(msgspec.Struct, frozen=True, kw_only=True):
    listen: tuple[str, ...] = ("/ip4/0.0.0.0/tcp/9000",)
    bootstrap: tuple[str, ...] = ()
    mdns: bool = False
    max_frame: Positive = 4 * 1024 * 1024
    """Largest direct frame, in bytes, sent or accepted; a peer sending more is dropped."""
    send_buffer: Positive = 256
    """Frames queued per peer link; send() waits when it is full (backpressure)."""
    write_batch_bytes: Positive = 64 * 1024
    """Queued frames are coalesced into one write up to this many bytes."""
    link_idle_ns: Positive = 10 * 60 * _S
    """A peer's outbound stream and writer are released after this long without frames."""
    dial_timeout_ns: Positive = 10 * _S
    reconnect_min_ns: Positive = 200 * _MS
    reconnect_max_ns: Positive = 30 * _S
    dht: bool = True
    dht_timeout_ns: Positive = 10 * _S
    gossip: GossipSettings = msgspec.field(default_factory=GossipSettings)

    def __post_init__(self) -> None:
        if not self.listen:
            raise InvalidAddress("network.listen", [], LISTEN_FORM, detail="is empty")
        for address in self.listen:
            check_listen_address(address)
        for address in self.bootstrap:
            check_peer_address(address, "network.bootstrap")

    @classmethod
    def from_config(
        cls, config: NetworkConfig, extra_bootstrap: Iterable[str] = (), **overrides: object
    ) -> P2PSettings:
        """The ``[network]`` config section, plus bootstrap peers from the command line."""
        bootstrap = tuple(dict.fromkeys([*config.bootstrap, *extra_bootstrap]))
        values: dict[str, object] = {
            "listen": tuple(config.listen),
            "bootstrap": bootstrap,
            "mdns": config.mdns,
            "max_frame": parse_size(config.max_frame, "network.max_frame"),
        }
        values.update(overrides)
        return msgspec.convert(values, cls)


def _parse(address: object, field: str, accepted: str) -> object:
    import multiaddr

    if not isinstance(address, str):
        raise InvalidAddress(field, address, accepted)
    try:
        return multiaddr.Multiaddr(address)
    except Exception as exc:  # multiaddr raises several unrelated types
        raise InvalidAddress(field, address, accepted, detail=f"does not parse ({exc})") from None


def check_listen_address(address: object, field: str = "network.listen") -> None:
    maddr = _parse(address, field, LISTEN_FORM)
    names = [p.name for p in maddr.protocols()]  # type: ignore[attr-defined]
    if len(names) != 2 or names[0] not in ("ip4", "ip6") or names[1] != "tcp":
        raise InvalidAddress(
            field, address, LISTEN_FORM, detail=f"is not {LISTEN_FORM} (only TCP is served)"
        )


def check_peer_address(address: object, field: str = "address") -> str:
    """Validate a dialable ``.../p2p/<peer id>`` multiaddr; return the peer id."""
    maddr = _parse(address, field, ADDRESS_FORM)
    names = [p.name for p in maddr.protocols()]  # type: ignore[attr-defined]
    if not names or names[-1] != "p2p":
        raise InvalidAddress(field, address, ADDRESS_FORM, detail="lacks the /p2p/<peer id> part")
    if "tcp" not in names:
        raise InvalidAddress(field, address, ADDRESS_FORM, detail="is not a TCP address")
    peer = maddr.value_for_protocol("p2p")  # type: ignore[attr-defined]
    return str(peer)
