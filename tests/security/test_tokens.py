"""Capability tokens: paths, signing, delegation that only narrows, and exact encoding."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dms.security import (
    MAX_DEPTH,
    Action,
    ChainVerifier,
    DelegationError,
    InvalidSignature,
    InvalidToken,
    Token,
    decode_token,
    delegate,
    encode_token,
    grant,
    grants,
    implies,
    revocation,
    token_from_text,
    token_to_text,
    verify_chain,
)
from dms.security.tokens import sign
from tests.security.conftest import NOW, SECOND, Keys, make_keys

HOUR = 3600 * SECOND
K = make_keys()


def root_grant(keys: Keys = K, **overrides: object) -> Token:
    fields: dict[str, object] = {
        "capabilities": ("/dms/deployment",),
        "topics": ("/dms/status",),
        "expires_ns": NOW + HOUR,
        "depth": 2,
    }
    fields.update(overrides)
    return grant(keys.root, keys.alice.did, **fields)  # type: ignore[arg-type]


class TestPaths:
    """A path implies itself and every path below it, nothing else."""

    @pytest.mark.parametrize(
        ("granted", "wanted", "expected"),
        [
            ("/dms/deployment", "/dms/deployment", True),
            ("/dms/deployment", "/dms/deployment/commit", True),
            ("/dms/deployment", "/dms/deployment/commit/x", True),
            ("/", "/anything/at/all", True),
            ("/dms/deployment", "/dms/deploymentx", False),
            ("/dms/deployment", "/dms", False),
            ("/dms/deployment/commit", "/dms/deployment", False),
            ("/dms/node", "/dms/deployment", False),
        ],
        ids=[
            "same",
            "child",
            "grandchild",
            "root",
            "prefix-not-segment",
            "parent",
            "sibling-up",
            "other",
        ],
    )
    def test_implication(self, granted: str, wanted: str, expected: bool) -> None:
        assert implies(granted, wanted) is expected

    @pytest.mark.parametrize(
        ("token_action", "asked", "capability", "expected"),
        [
            (Action.DELEGATE, Action.INVOKE, "/dms/deployment/bid", True),
            (Action.DELEGATE, Action.BROADCAST, "/dms/status", True),
            (Action.DELEGATE, Action.DELEGATE, "/dms/deployment", True),
            (Action.INVOKE, Action.INVOKE, "/dms/deployment/bid", True),
            (Action.INVOKE, Action.BROADCAST, "/dms/status", False),
            (Action.BROADCAST, Action.BROADCAST, "/dms/status", True),
            (Action.BROADCAST, Action.INVOKE, "/dms/deployment", False),
            (Action.DELEGATE, Action.BROADCAST, "/dms/deployment", False),
            (Action.DELEGATE, Action.INVOKE, "/dms/status", False),
        ],
        ids=[
            "delegate-invokes",
            "delegate-broadcasts",
            "delegate-delegates",
            "invoke-invokes",
            "invoke-cannot-broadcast",
            "broadcast-broadcasts",
            "broadcast-cannot-invoke",
            "topics-are-not-capabilities",
            "capabilities-are-not-topics",
        ],
    )
    def test_what_each_action_grants(
        self, token_action: Action, asked: Action, capability: str, expected: bool
    ) -> None:
        token = root_grant(action=token_action)
        assert grants(token, asked, capability) is expected

    def test_a_token_at_depth_zero_grants_no_delegation(self) -> None:
        assert not grants(root_grant(depth=0), Action.DELEGATE, "/dms/deployment")

    def test_a_revoke_token_grants_nothing(self) -> None:
        rev = revocation(K.root, root_grant())
        assert not any(grants(rev, action, "/dms/deployment") for action in Action)


class TestSigning:
    """A token verifies only as signed, by the DID it names as issuer."""

    def test_a_granted_token_verifies(self) -> None:
        token = root_grant()
        verified = verify_chain(token)
        assert verified.root == token
        assert verified.expires_ns == NOW + HOUR
        assert verified.revocation_ids == (token.revocation_id,)

    def test_a_forged_token_signed_by_another_key_is_refused(self) -> None:
        honest = root_grant()
        forged_sig = K.stranger.sign(
            b"dms-token-v1\x00"
            + msgspec.json.encode(msgspec.structs.replace(honest, signature=b""))
        )
        with pytest.raises(InvalidSignature, match="signature does not verify"):
            verify_chain(msgspec.structs.replace(honest, signature=forged_sig))

    @pytest.mark.parametrize(
        "change",
        [
            {"capabilities": ("/",)},
            {"topics": ("/",)},
            {"expires_ns": NOW + 2 * HOUR},
            {"depth": 3},
            {"audience": K.bob.did},
            {"subject": K.stranger.did},
            {"action": Action.INVOKE},
            {"nonce": "0" * 32},
        ],
        ids=["capabilities", "topics", "expiry", "depth", "audience", "subject", "action", "nonce"],
    )
    def test_a_tampered_field_is_refused(self, change: dict[str, object]) -> None:
        tampered = msgspec.structs.replace(root_grant(), **change)
        with pytest.raises(InvalidSignature):
            verify_chain(tampered)

    def test_a_token_without_a_signature_is_refused(self) -> None:
        with pytest.raises(InvalidSignature):
            verify_chain(msgspec.structs.replace(root_grant(), signature=b""))

    def test_a_signature_made_for_another_purpose_is_refused(self) -> None:
        token = root_grant()
        undomained = K.root.sign(msgspec.json.encode(msgspec.structs.replace(token, signature=b"")))
        with pytest.raises(InvalidSignature):
            verify_chain(msgspec.structs.replace(token, signature=undomained))

    def test_signing_a_token_naming_another_issuer_is_refused(self) -> None:
        with pytest.raises(InvalidToken, match="issuer"):
            sign(K.stranger, msgspec.structs.replace(root_grant(), signature=b""))

    def test_delegating_a_token_granted_to_someone_else_is_refused(self) -> None:
        with pytest.raises(DelegationError, match="issuer"):
            delegate(K.stranger, root_grant(), K.bob.did)

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("capabilities", ("dms/no-slash",)),
            ("capabilities", ("/dms/../etc",)),
            ("capabilities", ("/a b",)),
            ("topics", ("",)),
            ("capabilities", tuple(f"/c{i}" for i in range(65))),
            ("depth", MAX_DEPTH + 1),
            ("depth", -1),
            ("expires_ns", -5),
            ("nonce", "short"),
            ("audience", "did:web:example.com"),
        ],
        ids=[
            "relative",
            "dot-dot",
            "space",
            "empty-topic",
            "too-many",
            "too-deep",
            "negative-depth",
            "negative-expiry",
            "short-nonce",
            "foreign-did",
        ],
    )
    def test_fields_outside_the_schema_are_refused_naming_the_field(
        self, field: str, value: object
    ) -> None:
        with pytest.raises(InvalidToken, match=field):
            root_grant(**{field: value})


class TestDelegation:
    """Each link is signed by its parent's subject and may only narrow the parent."""

    def test_a_narrowing_chain_verifies(self) -> None:
        parent = root_grant()
        child = delegate(K.alice, parent, K.bob.did, capabilities=("/dms/deployment/commit",))
        grandchild = delegate(K.bob, child, K.carol.did, action=Action.INVOKE)
        verified = verify_chain(grandchild)
        assert verified.root == parent
        assert [t.issuer for t in grandchild.links()] == [K.root.did, K.alice.did, K.bob.did]
        assert grandchild.depth == 0
        assert len(verified.revocation_ids) == 3

    def test_omitted_fields_keep_the_parents_scope(self) -> None:
        parent = root_grant(audience=K.node.did)
        child = delegate(K.alice, parent, K.bob.did)
        assert child.capabilities == parent.capabilities
        assert child.topics == parent.topics
        assert child.audience == parent.audience
        assert child.expires_ns == parent.expires_ns
        assert child.depth == parent.depth - 1

    @pytest.mark.parametrize(
        ("parent_fields", "child_fields", "field"),
        [
            ({}, {"capabilities": ("/dms",)}, "capabilities"),
            ({}, {"capabilities": ("/dms/node",)}, "capabilities"),
            ({}, {"topics": ("/dms/other",)}, "topics"),
            ({}, {"expires_ns": NOW + 2 * HOUR}, "expires_ns"),
            ({}, {"depth": 2}, "depth"),
            ({"depth": 0}, {"depth": 0}, "depth"),
            ({"audience": K.node.did}, {"audience": ""}, "audience"),
            ({"audience": K.node.did}, {"audience": K.other_node.did}, "audience"),
            ({"action": Action.INVOKE}, {}, "parent action"),
            ({"action": Action.BROADCAST}, {}, "parent action"),
        ],
        ids=[
            "wider-capability",
            "other-capability",
            "other-topic",
            "later-expiry",
            "same-depth",
            "parent-depth-zero",
            "audience-widened",
            "audience-changed",
            "parent-is-invoke",
            "parent-is-broadcast",
        ],
    )
    def test_an_over_delegation_is_refused_before_signing(
        self, parent_fields: dict[str, object], child_fields: dict[str, object], field: str
    ) -> None:
        parent = root_grant(**parent_fields)
        with pytest.raises(DelegationError, match=field) as info:
            delegate(K.alice, parent, K.bob.did, **child_fields)  # type: ignore[arg-type]
        assert info.value.field == field

    def test_an_over_delegation_signed_by_hand_is_refused_on_verification(self) -> None:
        parent = root_grant()
        wide = Token(
            issuer=K.alice.did,
            subject=K.bob.did,
            action=Action.DELEGATE,
            capabilities=("/",),
            expires_ns=NOW + HOUR,
            nonce="n" * 16,
            depth=1,
            chain=(parent.as_link(),),
        )
        signed = msgspec.structs.replace(wide, signature=K.alice.sign(_payload(wide)))
        with pytest.raises(DelegationError, match="capabilities"):
            verify_chain(signed)

    def test_a_link_not_signed_by_the_parents_subject_is_refused(self) -> None:
        parent = root_grant()
        child = Token(
            issuer=K.stranger.did,
            subject=K.bob.did,
            action=Action.INVOKE,
            capabilities=("/dms/deployment",),
            expires_ns=NOW + HOUR,
            nonce="n" * 16,
            chain=(parent.as_link(),),
        )
        signed = msgspec.structs.replace(child, signature=K.stranger.sign(_payload(child)))
        with pytest.raises(DelegationError, match="issuer"):
            verify_chain(signed)

    def test_a_tampered_ancestor_is_refused_even_with_a_fresh_leaf_signature(self) -> None:
        child = delegate(K.alice, root_grant(), K.bob.did)
        widened = msgspec.structs.replace(child.chain[0], capabilities=("/",))
        resigned_leaf = msgspec.structs.replace(child, chain=(widened,))
        resigned_leaf = msgspec.structs.replace(
            resigned_leaf, signature=K.alice.sign(_payload(resigned_leaf))
        )
        with pytest.raises(InvalidSignature, match=r"chain\[0\]"):
            verify_chain(resigned_leaf)

    def test_depth_limits_the_chain_length(self) -> None:
        token = root_grant(depth=2)
        a_to_b = delegate(K.alice, token, K.bob.did)
        b_to_c = delegate(K.bob, a_to_b, K.carol.did)
        assert b_to_c.depth == 0
        with pytest.raises(DelegationError, match="depth"):
            delegate(K.carol, b_to_c, K.stranger.did)


class TestCache:
    """Verification is cached by signature and never trusts a copied signature."""

    def test_a_second_verification_is_a_cache_hit(self) -> None:
        verifier = ChainVerifier()
        token = root_grant()
        assert verifier.verify(token) == verifier.verify(token)
        assert (verifier.hits, verifier.misses) == (1, 1)

    def test_other_content_under_a_cached_signature_is_verified_and_refused(self) -> None:
        verifier = ChainVerifier()
        token = root_grant()
        verifier.verify(token)
        with pytest.raises(InvalidSignature):
            verifier.verify(msgspec.structs.replace(token, capabilities=("/",)))

    def test_the_cache_is_bounded(self) -> None:
        verifier = ChainVerifier(max_entries=2)
        tokens = [root_grant() for _ in range(3)]
        for token in tokens:
            verifier.verify(token)
        verifier.verify(tokens[0])
        assert verifier.misses == 4


def _payload(token: Token) -> bytes:
    return b"dms-token-v1\x00" + msgspec.json.encode(msgspec.structs.replace(token, signature=b""))


CHAINED = delegate(K.alice, root_grant(), K.bob.did, capabilities=("/dms/deployment/commit",))
ENCODED = encode_token(CHAINED)
TEXT = token_to_text(CHAINED)


class TestEncoding:
    """Tokens travel as exact bytes: they decode back equal, and any altered byte is refused."""

    def test_json_and_text_round_trip(self) -> None:
        assert decode_token(ENCODED) == CHAINED
        assert token_from_text(TEXT) == CHAINED
        assert token_from_text(ENCODED.decode()) == CHAINED

    @settings(max_examples=300)
    @given(index=st.integers(0, len(ENCODED) - 1), byte=st.integers(0, 255))
    def test_any_changed_byte_of_the_json_is_refused(self, index: int, byte: int) -> None:
        if ENCODED[index] == byte:
            return
        tampered = ENCODED[:index] + bytes([byte]) + ENCODED[index + 1 :]
        with pytest.raises((InvalidToken, InvalidSignature, DelegationError)):
            verify_chain(decode_token(tampered))

    @settings(max_examples=300)
    @given(index=st.integers(0, len(TEXT) - 1), char=st.characters(codec="ascii"))
    def test_any_changed_character_of_the_text_is_refused(self, index: int, char: str) -> None:
        if TEXT[index] == char:
            return
        tampered = TEXT[:index] + char + TEXT[index + 1 :]
        if tampered.strip() == TEXT:
            return
        with pytest.raises((InvalidToken, InvalidSignature, DelegationError)):
            verify_chain(token_from_text(tampered))

    def test_an_unknown_field_is_refused(self) -> None:
        with pytest.raises(InvalidToken, match="unknown field"):
            decode_token(ENCODED[:-1] + b',"extra":1}')

    def test_deeply_nested_input_is_refused_with_a_typed_error(self) -> None:
        with pytest.raises(InvalidToken):
            decode_token(b'{"chain":[' * 5000 + b"]}" * 5000)

    @pytest.mark.parametrize(
        "text",
        ["", "!!!", "e30", "{not json"],
        ids=["empty", "not-base64", "empty-object", "bad-json"],
    )
    def test_malformed_text_is_refused(self, text: str) -> None:
        with pytest.raises(InvalidToken):
            token_from_text(text)
