"""Ed25519 key pairs, signature checks and did:key encoding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dms.errors import SecurityError
from dms.security import (
    InvalidDID,
    InvalidKey,
    KeyPair,
    did_from_public_key,
    is_did,
    public_key_from_did,
    verify_signature,
)

seeds = st.binary(min_size=32, max_size=32)

ZERO_SEED_DID = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
"""The did:key of the Ed25519 key from the all-zero seed, as published in the did:key spec."""


class TestKeyPair:
    """A key pair signs, knows its public key and DID, and rebuilds from its seed."""

    def test_the_zero_seed_gives_the_published_did(self) -> None:
        assert KeyPair.from_seed(bytes(32)).did == ZERO_SEED_DID

    def test_a_key_pair_rebuilt_from_its_seed_has_the_same_identity(self) -> None:
        kp = KeyPair.generate()
        again = KeyPair.from_seed(kp.seed)
        assert again.public_key == kp.public_key
        assert again.did == kp.did
        assert again == kp

    def test_two_generated_key_pairs_differ(self) -> None:
        assert KeyPair.generate().did != KeyPair.generate().did

    def test_a_signature_is_64_bytes_and_verifies(self) -> None:
        kp = KeyPair.generate()
        signature = kp.sign(b"hello")
        assert len(signature) == 64
        assert verify_signature(kp.public_key, b"hello", signature)

    def test_the_repr_shows_the_did_and_never_the_seed(self) -> None:
        kp = KeyPair.generate()
        assert kp.did in repr(kp)
        assert kp.seed.hex() not in repr(kp)

    @pytest.mark.parametrize(
        "seed", [b"", bytes(31), bytes(33), "0" * 32], ids=["empty", "short", "long", "text"]
    )
    def test_a_seed_that_is_not_32_bytes_is_refused(self, seed: object) -> None:
        with pytest.raises(InvalidKey) as info:
            KeyPair.from_seed(seed)  # type: ignore[arg-type]
        assert "seed" in str(info.value)
        assert isinstance(info.value, SecurityError)


class TestVerifySignature:
    """verify_signature answers yes only for the signer's untouched data, and never raises."""

    def test_a_signature_from_another_key_is_refused(self) -> None:
        signer, other = KeyPair.generate(), KeyPair.generate()
        assert not verify_signature(other.public_key, b"data", signer.sign(b"data"))

    def test_a_signature_over_other_data_is_refused(self) -> None:
        kp = KeyPair.generate()
        assert not verify_signature(kp.public_key, b"data!", kp.sign(b"data"))

    @pytest.mark.parametrize(
        ("key", "signature"),
        [
            (b"", bytes(64)),
            (bytes(31), bytes(64)),
            (bytes(32), b""),
            (bytes(32), bytes(63)),
            (b"\xff" * 32, bytes(64)),
        ],
        ids=["empty-key", "short-key", "empty-signature", "short-signature", "invalid-point"],
    )
    def test_malformed_keys_and_signatures_are_refused_without_raising(
        self, key: bytes, signature: bytes
    ) -> None:
        assert verify_signature(key, b"data", signature) is False

    @given(data=st.binary(max_size=256), index=st.integers(min_value=0), flip=st.integers(1, 255))
    def test_any_flipped_bit_in_the_signature_is_refused(
        self, data: bytes, index: int, flip: int
    ) -> None:
        kp = KeyPair.from_seed(bytes(range(32)))
        signature = bytearray(kp.sign(data))
        signature[index % 64] ^= flip
        assert not verify_signature(kp.public_key, data, bytes(signature))

    @given(data=st.binary(min_size=1, max_size=256), index=st.integers(0), flip=st.integers(1, 255))
    def test_any_flipped_bit_in_the_data_is_refused(
        self, data: bytes, index: int, flip: int
    ) -> None:
        kp = KeyPair.from_seed(bytes(range(32)))
        signature = kp.sign(data)
        tampered = bytearray(data)
        tampered[index % len(data)] ^= flip
        assert not verify_signature(kp.public_key, bytes(tampered), signature)


class TestDidKey:
    """did:key encodes an Ed25519 public key and decodes back to exactly that key."""

    @given(seeds)
    def test_a_did_decodes_to_the_key_it_was_made_from(self, seed: bytes) -> None:
        kp = KeyPair.from_seed(seed)
        assert kp.did.startswith("did:key:z6Mk")
        assert did_from_public_key(kp.public_key) == kp.did
        assert public_key_from_did(kp.did) == kp.public_key
        assert is_did(kp.did)

    @pytest.mark.parametrize(
        "did",
        [
            "",
            "did:web:example.com",
            "did:key:6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
            "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooW0",
            "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooW",
            "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWpp",
            "did:key:zDnaerDaTF5BXEavCrfRZEk316dpbLsfPDZ3WJ5hRTPFU2169",
            "did:key:z1" + "1" * 40,
            "did:key:z" + "é" * 40,
            "did:key:z" + "2" * 500,
        ],
        ids=[
            "empty",
            "other-method",
            "no-multibase-prefix",
            "not-base58",
            "key-too-short",
            "key-too-long",
            "p256-key",
            "leading-zeros",
            "non-ascii",
            "very-long",
        ],
    )
    def test_a_malformed_did_is_refused_with_a_typed_error(self, did: str) -> None:
        with pytest.raises(InvalidDID) as info:
            public_key_from_did(did)
        assert "did:key:z6Mk" in str(info.value)
        assert not is_did(did)

    def test_a_public_key_that_is_not_32_bytes_has_no_did(self) -> None:
        with pytest.raises(InvalidDID):
            did_from_public_key(bytes(31))

    @given(seeds, st.integers(min_value=0), st.sampled_from("123456789ABCDEFGHJKLMNPQRSTUVWXYZ"))
    def test_changing_one_character_of_a_did_never_yields_the_same_key(
        self, seed: bytes, index: int, char: str
    ) -> None:
        did = KeyPair.from_seed(seed).did
        position = len("did:key:z") + index % (len(did) - len("did:key:z"))
        changed = did[:position] + char + did[position + 1 :]
        if changed == did:
            return
        if is_did(changed):
            assert public_key_from_did(changed) != public_key_from_did(did)
