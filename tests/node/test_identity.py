"""Peer ids and DIDs convert both ways, and agree with the libp2p package's conversion."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dms.node.identity import did_from_peer_id, peer_id_from_did, peer_of
from dms.security import KeyPair

seeds = st.binary(min_size=32, max_size=32)


@given(seeds)
def test_did_and_peer_id_round_trip(seed: bytes) -> None:
    did = KeyPair.from_seed(seed).did
    assert did_from_peer_id(peer_id_from_did(did)) == did


@settings(deadline=None)  # the first example imports libp2p
@given(seeds)
def test_agrees_with_the_network_package(seed: bytes) -> None:
    from dms.network.p2p.identity import peer_id_from_seed

    assert peer_id_from_did(KeyPair.from_seed(seed).did) == peer_id_from_seed(seed)


def test_a_peer_id_without_a_key_has_no_did() -> None:
    assert did_from_peer_id("memory-node-1") == ""
    assert did_from_peer_id("") == ""


def test_peer_of_accepts_either_form() -> None:
    did = KeyPair.generate().did
    assert peer_of(did) == peer_id_from_did(did)
    assert peer_of(peer_id_from_did(did)) == peer_id_from_did(did)
    assert peer_of("did:key:zbroken") == "did:key:zbroken"
