"""Peer ids and DIDs convert both ways; either form names a peer."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dms.node.identity import did_from_peer_id, peer_id_from_did, peer_of
from dms.security import KeyPair

seeds = st.binary(min_size=32, max_size=32)


@given(seeds)
def test_did_and_peer_id_round_trip(seed: bytes) -> None:
    did = KeyPair.from_seed(seed).did
    assert did_from_peer_id(peer_id_from_did(did)) == did


@given(seeds)
def test_the_peer_id_of_a_did_is_the_one_its_key_gives(seed: bytes) -> None:
    from dms.network.p2p.identity import peer_id_from_seed

    assert peer_id_from_did(KeyPair.from_seed(seed).did) == peer_id_from_seed(seed)


def test_importing_it_does_not_import_libp2p() -> None:
    import subprocess
    import sys

    code = "import sys, dms.node.identity; print('libp2p' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_peer_id_without_a_key_has_no_did() -> None:
    assert did_from_peer_id("memory-node-1") == ""
    assert did_from_peer_id("") == ""


def test_peer_of_accepts_either_form() -> None:
    did = KeyPair.generate().did
    assert peer_of(did) == peer_id_from_did(did)
    assert peer_of(peer_id_from_did(did)) == peer_id_from_did(did)
    assert peer_of("did:key:zbroken") == "did:key:zbroken"
