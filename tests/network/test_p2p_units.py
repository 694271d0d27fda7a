"""The libp2p network's pure parts: frames, identities, settings."""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import base58
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dms.config import NetworkConfig
from dms.errors import InputError
from dms.network.base import FrameTooLarge
from dms.network.p2p import (
    InvalidAddress,
    InvalidPeerID,
    P2PSettings,
    did_from_peer_id,
    peer_id_from_did,
    peer_id_from_public_key,
    peer_id_from_seed,
    public_key_from_peer_id,
)
from dms.network.p2p.framing import FrameDecoder, encode, encode_many
from dms.security import KeyPair
from tests.network.p2p_logs import log_to_current_stderr


@pytest.fixture(autouse=True)
def _logs_to_current_stderr() -> None:
    log_to_current_stderr()


frames_strategy = st.lists(st.binary(max_size=300), max_size=20)


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, start = [], 0
    for point in [*points, len(data)]:
        pieces.append(data[start:point])
        start = point
    return pieces


class TestFraming:
    """Length-prefixed frames survive any chunking; oversized lengths are refused at the header."""

    @given(frames=frames_strategy, cuts=st.lists(st.integers(min_value=0), max_size=30))
    def test_frames_come_out_whole_and_in_order_however_the_bytes_are_cut(
        self, frames: list[bytes], cuts: list[int]
    ) -> None:
        decoder = FrameDecoder(max_frame=300)
        out: list[bytes] = []
        for piece in split_at(encode_many(frames), cuts):
            out.extend(decoder.feed(piece))
        assert out == frames
        assert decoder.pending == 0

    @given(frames=frames_strategy)
    def test_one_write_of_many_frames_equals_the_frames_encoded_one_by_one(
        self, frames: list[bytes]
    ) -> None:
        assert encode_many(frames) == b"".join(encode(f, 300) for f in frames)

    def test_an_oversized_header_is_refused_before_its_body_arrives(self) -> None:
        decoder = FrameDecoder(max_frame=1024)
        with pytest.raises(FrameTooLarge) as info:
            decoder.feed(struct.pack(">I", 1025))
        assert (info.value.size, info.value.limit) == (1025, 1024)

    def test_a_frame_of_exactly_the_maximum_is_accepted(self) -> None:
        assert FrameDecoder(max_frame=4).feed(encode(b"abcd", 4)) == [b"abcd"]

    def test_encoding_refuses_a_frame_over_the_maximum(self) -> None:
        with pytest.raises(FrameTooLarge, match="5 bytes exceeds the maximum of 4 bytes"):
            encode(b"abcde", 4)

    def test_a_truncated_frame_is_reported_as_pending(self) -> None:
        decoder = FrameDecoder(max_frame=100)
        assert decoder.feed(encode(b"hello", 100)[:-2]) == []
        assert decoder.pending == 4 + 3


class TestIdentity:
    """Peer ids and did:key DIDs name the same Ed25519 key and convert both ways."""

    @given(seed=st.binary(min_size=32, max_size=32))
    def test_peer_id_and_did_round_trip_and_agree_with_the_security_package(
        self, seed: bytes
    ) -> None:
        keys = KeyPair.from_seed(seed)
        peer = peer_id_from_seed(seed)
        assert peer.startswith("12D3KooW")
        assert did_from_peer_id(peer) == keys.did
        assert peer_id_from_did(keys.did) == peer
        assert public_key_from_peer_id(peer) == keys.public_key

    def test_the_peer_id_is_the_one_libp2p_derives(self) -> None:
        from libp2p.peer.id import ID

        from dms.network.p2p.host import key_pair_from_seed

        seed = os.urandom(32)
        assert ID.from_pubkey(key_pair_from_seed(seed).public_key).to_base58() == (
            peer_id_from_seed(seed)
        )

    @pytest.mark.parametrize(
        "bad",
        [
            "",
            "not base58 0OIl",
            "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",  # an RSA-style sha256 peer id
            base58.b58encode(b"\x00\x24\x08\x01\x12\x20" + b"\x01" * 31).decode(),
        ],
        ids=["empty", "not-base58", "sha256-multihash", "short-key"],
    )
    def test_ids_that_are_not_ed25519_identities_are_refused(self, bad: str) -> None:
        with pytest.raises(InvalidPeerID) as info:
            did_from_peer_id(bad)
        assert "Ed25519 libp2p peer id" in str(info.value)

    @pytest.mark.parametrize(
        "bad",
        ["", "did:web:example.com", "did:key:zNotBase58!", "did:key:z" + "1" * 10],
        ids=["empty", "other-method", "not-base58", "wrong-length"],
    )
    def test_dids_that_are_not_ed25519_keys_are_refused(self, bad: str) -> None:
        with pytest.raises(InvalidPeerID, match="did"):
            peer_id_from_did(bad)

    def test_a_public_key_of_the_wrong_size_is_refused(self) -> None:
        with pytest.raises(InvalidPeerID, match="32-byte"):
            peer_id_from_public_key(b"\x01" * 31)

    def test_a_seed_of_the_wrong_size_is_refused(self) -> None:
        with pytest.raises(InvalidPeerID, match='seed: "31 bytes" is not a 32-byte Ed25519 seed'):
            peer_id_from_seed(b"\x01" * 31)


class TestSettings:
    """Settings come from the [network] config section; bad addresses name the field."""

    def test_the_config_section_and_command_line_bootstrap_peers_are_merged(self) -> None:
        peer = peer_id_from_seed(b"\x02" * 32)
        first = f"/ip4/10.0.0.1/tcp/9000/p2p/{peer}"
        second = f"/ip4/10.0.0.2/tcp/9000/p2p/{peer}"
        config = NetworkConfig(bootstrap=[first], max_frame="1MiB", mdns=True)
        settings = P2PSettings.from_config(config, extra_bootstrap=[second, first])
        assert settings.bootstrap == (first, second)
        assert settings.listen == ("/ip4/0.0.0.0/tcp/9000",)
        assert (settings.max_frame, settings.mdns) == (1024 * 1024, True)

    @pytest.mark.parametrize(
        ("listen", "reason"),
        [
            ("/ip4/0.0.0.0/udp/9000/quic-v1", "only TCP"),
            ("/ip4/0.0.0.0/tcp/99999", "does not parse"),
            ("localhost:9000", "does not parse"),
            ("/ip4/0.0.0.0/tcp/9000/ws", "only TCP"),
        ],
        ids=["quic", "bad-port", "not-a-multiaddr", "websocket"],
    )
    def test_listen_addresses_other_than_tcp_are_refused(self, listen: str, reason: str) -> None:
        with pytest.raises(InvalidAddress) as info:
            P2PSettings(listen=(listen,))
        assert str(info.value).startswith(f'network.listen: "{listen}"')
        assert reason in str(info.value)

    @pytest.mark.parametrize(
        ("address", "reason"),
        [
            ("/ip4/10.0.0.1/tcp/9000", "lacks the /p2p/<peer id> part"),
            ("/ip4/10.0.0.1/udp/9000/p2p/" + peer_id_from_seed(b"\x03" * 32), "not a TCP"),
            ("10.0.0.1:9000", "does not parse"),
        ],
        ids=["no-peer-id", "udp", "not-a-multiaddr"],
    )
    def test_bootstrap_addresses_need_tcp_and_a_peer_id(self, address: str, reason: str) -> None:
        with pytest.raises(InvalidAddress) as info:
            P2PSettings(bootstrap=(address,))
        assert str(info.value).startswith("network.bootstrap: ")
        assert reason in str(info.value)
        assert isinstance(info.value, InputError)

    def test_an_empty_listen_list_is_refused(self) -> None:
        with pytest.raises(InvalidAddress, match="network.listen: .* is empty"):
            P2PSettings(listen=())


class TestImports:
    """libp2p is imported only with the network itself, and never drags its stray packages in."""

    def test_identity_and_settings_import_without_libp2p_and_the_network_imports_no_strays(
        self,
    ) -> None:
        probe = (
            "import sys\n"
            "import dms.network, dms.network.memory\n"
            "from dms.network.p2p import P2PSettings, peer_id_from_did\n"
            "light = not any(m.split('.')[0] == 'libp2p' for m in sys.modules)\n"
            "from dms.network.p2p import P2PNetwork\n"
            "loaded = 'libp2p' in sys.modules\n"
            "stray = sorted({m.split('.')[0] for m in sys.modules} & "
            "{'examples', 'docs', 'interop', 'stubs', 'newsfragments'})\n"
            "print(light, loaded, stray)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True
        )
        assert done.stdout.split() == ["True", "True", "[]"]
