"""Building the libp2p host: Ed25519 identity from the seed, TCP, Noise only, yamux only.

py-libp2p's defaults are wrong for us in a few measured ways; every correction is made here, in
one place, when a host is built:

- security: ``new_host()`` offers Noise, TLS, SECIO *and plaintext* unless told otherwise; we pass
  Noise alone, so a plaintext (or any other) dialer fails negotiation and is disconnected;
- muxer: yamux alone (mplex has no flow control, so no backpressure);
- the 250 ms dial delay: ``Swarm.dial_peer`` starts a dial and then waits up to 250 ms ("happy
  eyeballs") before looking at the result, unless the dial fails or the per-peer connection
  limit is reached. With ``max_connections_per_peer=1`` a successful dial reaches the limit and
  ends the wait at once: dials take ~10-25 ms on loopback instead of ~260 ms. One connection per
  peer is what we want anyway (one long-lived stream per direction on it);
- dial retries: the swarm retries a failed dial 3 times with backoff and then refuses the peer
  for 60 s; we retry on our own schedule (``Reconnector``), so the swarm tries once;
- the auto-connector (it dials any peerstore entry to keep ~150 connections) never dials: we
  decide whom to keep connected;
- gossipsub queue sizes: see :func:`tune_pubsub`;
- yamux window updates: about one per read by default, batched here (see :func:`tune_yamux`
  and :func:`batch_window_updates`);
- listening: py-libp2p binds with SO_REUSEPORT, so a second node on a taken port starts happily
  and the kernel splits incoming connections between the two; :func:`check_listen_free`
  probes each fixed port first (without SO_REUSEPORT) and refuses a taken one;
- logs: py-libp2p's logger does not propagate (its warnings bypass our handlers) and a few of
  its loggers report, at warning or error level, what is normal or what we report ourselves:
  see :func:`quiet_libp2p_logs`.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetStream
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.auto_connector import AutoConnector
from libp2p.network.config import ConnectionConfig, RetryConfig
from libp2p.network.swarm import Swarm
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux, YamuxStream

from dms.network.p2p.errors import ListenFailed
from dms.network.p2p.identity import check_seed
from dms.network.p2p.settings import GossipSettings, P2PSettings

_NS_PER_S = 1e9


def key_pair_from_seed(seed: bytes) -> KeyPair:
    """The libp2p Ed25519 key pair of a 32-byte seed (the same key as dms.security's)."""
    return create_new_key_pair(check_seed(seed))


NOISY_LOGGERS = {
    # "Failed to read DHT message from stream" whenever a peer closes a DHT stream (measured)
    "libp2p.kad_dht.kad_dht": logging.ERROR,
    # every failed dial and refused stream, which we raise as PeerUnreachable with the reason
    "libp2p.transport.tcp.tcp": logging.CRITICAL,
    "libp2p.host.basic_host": logging.CRITICAL,
}


def quiet_libp2p_logs() -> None:
    """Route libp2p's logs through ours, minus the noise. ``LIBP2P_DEBUG`` still overrides."""
    if os.environ.get("LIBP2P_DEBUG"):
        return
    logging.getLogger("libp2p").propagate = True
    for name, level in NOISY_LOGGERS.items():
        logging.getLogger(name).setLevel(level)


def swarm_of(host: IHost) -> Swarm:
    swarm = host.get_network()
    assert isinstance(swarm, Swarm), f"new_host() built a {type(swarm).__name__}, not a Swarm"
    return swarm


def check_listen_free(addresses: Sequence[str]) -> None:
    """Raise ListenFailed for a fixed TCP port that something already listens on."""
    for address in addresses:
        maddr = multiaddr.Multiaddr(address)
        port = int(maddr.value_for_protocol("tcp"))
        if port == 0:
            continue
        family, host = socket.AF_INET, maddr.value_for_protocol("ip4")
        if host is None:
            family, host = socket.AF_INET6, maddr.value_for_protocol("ip6")
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine
            try:
                probe.bind((str(host), port))
            except OSError as exc:
                raise ListenFailed(address, exc.strerror or str(exc)) from None


def tune_yamux() -> None:
    """Fewer yamux window updates on every stream of the host.

    py-libp2p's yamux sends a WINDOW_UPDATE frame after each read of a stream by default
    (``PY_YAMUX_RELEASE_ON_READ=1``): with small request/reply frames that is one extra frame,
    Noise encryption and syscall per message in each direction. With it off, that rule is gone,
    but another one still sends about every second read (see :func:`batch_window_updates`,
    which our own protocol's streams use). The library reads the variable at each use; an
    operator's own setting wins.
    """
    os.environ.setdefault("PY_YAMUX_RELEASE_ON_READ", "0")


def batch_window_updates(stream: INetStream) -> None:
    """Make a stream we read send yamux window updates only once half its window is used.

    ``PY_YAMUX_RELEASE_ON_READ=0`` (:func:`tune_yamux`) is not enough: py-libp2p 0.8's window
    logic also has a "partial slack" rule that sends an update whenever the window is not full
    after a read. With small request/reply frames that is an update about every second read,
    each a Noise-encrypted frame and a syscall (~70 us here) made *before* the read returns its
    data, so on the path of every reply. go-yamux sends one when the unused credit reaches half
    the window; this does the same for the streams of our own protocol (their reader calls it
    once, on accepting the stream). Other protocols' streams keep the library's rule.
    """
    muxed = getattr(stream, "muxed_stream", None)
    if not isinstance(muxed, YamuxStream):
        return

    async def update(*, bytes_read: int = 0) -> None:
        buffered = len(muxed.conn.stream_buffers.get(muxed.stream_id, b""))
        credit = muxed.target_recv_window - (muxed.recv_window + buffered)
        if credit > 0 and credit >= muxed._grow_threshold():
            muxed.recv_window += credit
            await muxed.send_window_update(credit, skip_lock=True)

    # the stream's read() calls this after taking data out of its buffer
    muxed._auto_tune_and_send_window_update = update  # type: ignore[method-assign]


def build_host(seed: bytes, settings: P2PSettings) -> IHost:
    quiet_libp2p_logs()
    tune_yamux()
    key_pair = key_pair_from_seed(seed)
    noise = NoiseTransport(key_pair, noise_privkey=create_x25519_key_pair().private_key)
    dial_timeout = settings.dial_timeout_ns / _NS_PER_S
    connections = ConnectionConfig(
        max_connections_per_peer=1,  # ends the 250 ms dial wait on success (see above)
        dial_timeout=dial_timeout,
        outbound_upgrade_timeout=dial_timeout,
    )
    host = new_host(
        key_pair=key_pair,
        sec_opt={NOISE_PROTOCOL_ID: noise},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        listen_addrs=[multiaddr.Multiaddr(a) for a in settings.listen],
        connection_config=connections,
        enable_mDNS=settings.mdns,
    )
    swarm = swarm_of(host)
    # new_host() has no parameter for the retry policy: one attempt, we schedule retries.
    swarm.retry_config = RetryConfig(max_retries=0)
    swarm.auto_connector = _NoAutoConnector(swarm)
    return host


class _NoAutoConnector(AutoConnector):
    """The swarm's auto-connector, minus the dialling: whom to keep connected is ours to say.

    Its target is midway between the watermarks (150 connections by default) and it dials any
    peerstore entry to get there, including peers we dropped for misbehaving.
    """

    async def maybe_connect(self) -> None:
        await trio.lowlevel.checkpoint()


def tune_pubsub(gossip: GossipSettings) -> None:
    """Raise py-libp2p's gossipsub queue sizes; they are module constants read at use.

    ``Pubsub`` gives each subscription a 32-message channel and each peer a 32-RPC outbound
    queue, and silently drops what does not fit. The constructor takes neither size, so we raise
    the module-level values. Idempotent; affects every Pubsub in this process (we run one).
    """
    import libp2p.pubsub.pubsub as pubsub_module
    from libp2p.pubsub.rpc_queue import DefaultMaxMessageSize, RpcQueue

    queue_size = gossip.outbound_queue

    class _RpcQueue(RpcQueue):
        def __init__(
            self, max_size: int = queue_size, max_message_size: int = DefaultMaxMessageSize
        ) -> None:
            super().__init__(max_size, max_message_size)

    pubsub_module.SUBSCRIPTION_CHANNEL_SIZE = gossip.subscription_buffer
    pubsub_module.RpcQueue = _RpcQueue  # type: ignore[attr-defined]


def listen_addresses(host: IHost) -> list[str]:
    """Dialable addresses with the /p2p/<peer id> suffix."""
    peer = host.get_id().to_base58()
    result: list[str] = []
    for address in host.get_addrs():
        text = str(address)
        if "/p2p/" not in text:
            text = f"{text}/p2p/{peer}"
        result.append(text)
    return result


def addresses_without_peer(addresses: Sequence[multiaddr.Multiaddr]) -> list[str]:
    return [str(a).split("/p2p/")[0] for a in addresses]
