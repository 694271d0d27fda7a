"""The trust context: who may do what, refusals with typed errors, anchors, persistence."""

from __future__ import annotations

import stat
from pathlib import Path

import msgspec
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from dms.errors import SecurityError
from dms.security import (
    Action,
    DelegationError,
    InvalidDID,
    InvalidSignature,
    InvalidToken,
    NotRooted,
    Revoked,
    Token,
    TokenExpired,
    TrustContext,
    TrustStoreError,
    Unauthorized,
    WrongAudience,
    WrongSubject,
    delegate,
    grant,
    revocation,
    trust_path,
)
from tests.security.conftest import NOW, SECOND, Keys, make_keys

HOUR = 3600 * SECOND
COMMIT = "/dms/deployment/commit"


def grant_alice(keys: Keys, **overrides: object) -> Token:
    """root -> alice: delegate /dms/deployment and /dms/status for an hour, depth 2."""
    fields: dict[str, object] = {
        "capabilities": ("/dms/deployment",),
        "topics": ("/dms/status",),
        "expires_ns": NOW + HOUR,
        "depth": 2,
    }
    fields.update(overrides)
    return grant(keys.root, keys.alice.did, **fields)  # type: ignore[arg-type]


class TestWhoPasses:
    """Roots, the node itself, public paths and valid chains pass."""

    def test_a_root_may_call_anything_without_tokens(self, trust: TrustContext, keys: Keys) -> None:
        trust.authorize(keys.root.did, Action.INVOKE, "/dms/node/onboarding/onboard", [], NOW)

    def test_the_node_itself_is_trusted(self, trust: TrustContext, keys: Keys) -> None:
        trust.authorize(keys.node.did, Action.BROADCAST, "/dms/status", [], NOW)

    def test_public_behaviors_need_no_capability(self, trust: TrustContext, keys: Keys) -> None:
        trust.authorize(keys.stranger.did, Action.INVOKE, "/public/hello", [], NOW)

    def test_a_root_grant_lets_its_subject_invoke_below_the_path(
        self, trust: TrustContext, keys: Keys
    ) -> None:
        trust.authorize(keys.alice.did, Action.INVOKE, COMMIT, [grant_alice(keys)], NOW)

    def test_a_root_grant_lets_its_subject_broadcast_on_its_topics(
        self, trust: TrustContext, keys: Keys
    ) -> None:
        trust.authorize(keys.alice.did, Action.BROADCAST, "/dms/status", [grant_alice(keys)], NOW)

    def test_a_two_step_chain_passes(self, trust: TrustContext, keys: Keys) -> None:
        to_bob = delegate(keys.alice, grant_alice(keys), keys.bob.did)
        to_carol = delegate(keys.bob, to_bob, keys.carol.did, capabilities=(COMMIT,))
        trust.authorize(keys.carol.did, Action.INVOKE, COMMIT, [to_carol], NOW)

    def test_one_good_token_among_useless_ones_passes(
        self, trust: TrustContext, keys: Keys
    ) -> None:
        useless = grant(
            keys.root, keys.alice.did, capabilities=("/dms/node",), expires_ns=NOW + HOUR
        )
        trust.authorize(keys.alice.did, Action.INVOKE, COMMIT, [useless, grant_alice(keys)], NOW)

    def test_a_token_for_this_audience_passes(self, trust: TrustContext, keys: Keys) -> None:
        token = grant_alice(keys, audience=keys.node.did)
        trust.authorize(keys.alice.did, Action.INVOKE, COMMIT, [token], NOW)

    def test_the_audience_can_be_given_per_message(self, keys: Keys) -> None:
        trust = TrustContext(roots=[keys.root.did])
        token = grant_alice(keys, audience=keys.other_node.did)
        trust.authorize(
            keys.alice.did, Action.INVOKE, COMMIT, [token], NOW, audience=keys.other_node.did
        )


class TestRefusals:
    """Each rule refuses with its own typed error, all SecurityError."""

    def test_no_token_is_unauthorized(self, trust: TrustContext, keys: Keys) -> None:
        with pytest.raises(Unauthorized, match="not a root"):
            trust.authorize(keys.stranger.did, Action.INVOKE, COMMIT, [], NOW)

    def test_a_capability_outside_the_grant_is_unauthorized(
        self, trust: TrustContext, keys: Keys
    ) -> None:
        with pytest.raises(Unauthorized, match="/dms/node/peers/list") as info:
            trust.authorize(
                keys.alice.did, Action.INVOKE, "/dms/node/peers/list", [grant_alice(keys)], NOW
            )
        assert info.value.capability == "/dms/node/peers/list"

    def test_a_forged_token_is_refused(self, trust: TrustContext, keys: Keys) -> None:
        honest = grant_alice(keys)
        forged = msgspec.structs.replace(honest, signature=keys.stranger.sign(b"anything"))
        with pytest.raises(InvalidSignature):
            trust.authorize(keys.alice.did, Action.INVOKE, COMMIT, [forged], NOW)

    def test_a_token_self_issued_by_a_stranger_is_not_rooted(
        self, trust: TrustContext, keys: Keys
    ) -> None:
        self_made = grant(
            keys.stranger, keys.stranger.did, capabilities=("/",), expires_ns=NOW + HOUR
        )
        with pytest.raises(NotRooted, match="neither a root nor anchored"):
            trust.authorize(keys.stranger.did, Action.INVOKE, COMMIT, [self_made], NOW)

    def test_a_tampered_token_is_refused(self, trust: TrustContext, keys: Keys) -> None:
        tampered = msgspec.structs.replace(grant_alice(keys), capabilities=("/",))
        with pytest.raises(InvalidSignature):
            trust.authorize(keys.alice.did, Action.INVOKE, "/dms/node/offboard", [tampered], NOW)

    def test_an_expired_token_is_refused(self, trust: TrustContext, keys: Keys) -> None:
        token = grant_alice(keys)
        with pytest.raises(TokenExpired) as info:
            trust.authorize(keys.alice.did, Action.INVOKE, COMMIT, [token], NOW + HOUR)
        assert info.value.expires_ns == NOW + HOUR

    def test_a_token_replayed_by_another_caller_is_refused(
        self, trust: TrustContext, keys: Keys
    ) -> None:
        stolen = grant_alice(keys)
        with pytest.raises(WrongSubject, match=keys.alice.did):
            trust.authorize(keys.stranger.did, Action.INVOKE, COMMIT, [stolen], NOW)

    def test_a_token_for_another_audience_is_refused(self, trust: TrustContext, keys: Keys) -> None:
        token = grant_alice(keys, audience=keys.other_node.did)
        with pytest.raises(WrongAudience, match=keys.other_node.did):
            trust.authorize(keys.alice.did, Action.INVOKE, COMMIT, [token], NOW)

    def test_a_token_with_an_audience_is_refused_where_no_audience_is_known(
        self, keys: Keys
    ) -> None:
        trust = TrustContext(roots=[keys.root.did])
        token = grant_alice(keys, audience=keys.node.did)
        with pytest.raises(WrongAudience):
            trust.authorize(keys.alice.did, Action.INVOKE, COMMIT, [token], NOW)

    def test_an_over_delegated_chain_is_refused(self, trust: TrustContext, keys: Keys) -> None:
        parent = grant_alice(keys, depth=1)
        child = delegate(keys.alice, parent, keys.bob.did)
        wide = Token(
            issuer=keys.bob.did,
            subject=keys.carol.did,
            action=Action.INVOKE,
            capabilities=(COMMIT,),
            expires_ns=NOW + HOUR,
            nonce="c" * 16,
            chain=(*child.chain, child.as_link()),
        )
        signed = msgspec.structs.replace(wide, signature=keys.bob.sign(_payload(wide)))
        with pytest.raises(DelegationError, match="depth"):
            trust.authorize(keys.carol.did, Action.INVOKE, COMMIT, [signed], NOW)

    def test_a_revoked_token_is_refused(self, trust: TrustContext, keys: Keys) -> None:
        token = grant_alice(keys)
        assert trust.revoke(revocation(keys.root, token))
        with pytest.raises(Revoked, match=token.nonce):
            trust.authorize(keys.alice.did, Action.INVOKE, COMMIT, [token], NOW)

    def test_revoking_a_link_refuses_every_chain_through_it(
        self, trust: TrustContext, keys: Keys
    ) -> None:
        parent = grant_alice(keys)
        child = delegate(keys.alice, parent, keys.bob.did)
        trust.revoke(revocation(keys.root, parent))
        assert trust.is_revoked(child)
        with pytest.raises(Revoked):
            trust.authorize(keys.bob.did, Action.INVOKE, COMMIT, [child], NOW)

    def test_the_most_telling_refusal_is_raised(self, trust: TrustContext, keys: Keys) -> None:
        irrelevant = grant(keys.root, keys.alice.did, capabilities=("/x",), expires_ns=NOW + HOUR)
        expired = grant_alice(keys, expires_ns=NOW)
        with pytest.raises(TokenExpired):
            trust.authorize(keys.alice.did, Action.INVOKE, COMMIT, [irrelevant, expired], NOW)

    def test_an_unknown_action_is_refused_naming_the_accepted_ones(
        self, trust: TrustContext, keys: Keys
    ) -> None:
        with pytest.raises(InvalidToken, match="invoke, delegate, broadcast, revoke"):
            trust.authorize(keys.alice.did, "call", COMMIT, [grant_alice(keys)], NOW)  # type: ignore[arg-type]

    def test_every_refusal_is_a_security_error(self, trust: TrustContext, keys: Keys) -> None:
        for kind in (Unauthorized, WrongSubject, WrongAudience, NotRooted, TokenExpired, Revoked):
            assert issubclass(kind, SecurityError)


class TestRevocation:
    """Only the issuer can revoke; revocations are kept until the token would expire."""

    def test_a_revocation_not_signed_by_the_issuer_is_refused(
        self, trust: TrustContext, keys: Keys
    ) -> None:
        token = grant_alice(keys)
        fake = revocation(keys.alice, delegate(keys.alice, token, keys.bob.did))
        fake = msgspec.structs.replace(
            fake, issuer=token.issuer, subject=token.subject, nonce=token.nonce
        )
        with pytest.raises(InvalidSignature):
            trust.revoke(fake)
        assert not trust.is_revoked(token)

    def test_a_revocation_by_anyone_but_the_issuer_cannot_be_made(self, keys: Keys) -> None:
        with pytest.raises(InvalidToken, match="issuer"):
            revocation(keys.alice, grant_alice(keys))

    def test_a_grant_is_not_accepted_as_a_revocation(self, trust: TrustContext, keys: Keys) -> None:
        with pytest.raises(InvalidToken, match="revoke"):
            trust.revoke(grant_alice(keys))

    def test_revoking_twice_reports_nothing_new(self, trust: TrustContext, keys: Keys) -> None:
        rev = revocation(keys.root, grant_alice(keys))
        assert trust.revoke(rev) is True
        assert trust.revoke(rev) is False

    def test_pruning_forgets_only_revocations_of_expired_tokens(
        self, trust: TrustContext, keys: Keys
    ) -> None:
        short = grant_alice(keys, expires_ns=NOW + SECOND)
        long = grant_alice(keys)
        trust.revoke(revocation(keys.root, short))
        trust.revoke(revocation(keys.root, long))
        assert trust.prune(NOW + 2 * SECOND) == 1
        assert trust.is_revoked(long) and not trust.is_revoked(short)


class TestVirtualTime:
    """Expiry follows the clock it is given: trio's mock clock runs hours in no time."""

    async def test_a_token_works_until_its_expiry_and_not_after(
        self, autojump_clock: trio.testing.MockClock, trust: TrustContext, keys: Keys
    ) -> None:
        def now_ns() -> int:
            return NOW + int(trio.current_time() * SECOND)

        token = grant(
            keys.root, keys.alice.did, capabilities=(COMMIT,), expires_ns=now_ns() + 30 * SECOND
        )
        trust.authorize(keys.alice.did, Action.INVOKE, COMMIT, [token], now_ns())
        await trio.sleep(29.999)
        trust.authorize(keys.alice.did, Action.INVOKE, COMMIT, [token], now_ns())
        await trio.sleep(0.001)
        with pytest.raises(TokenExpired):
            trust.authorize(keys.alice.did, Action.INVOKE, COMMIT, [token], now_ns())
        assert trio.current_time() == pytest.approx(30.0)

    @given(st.integers(0, 2 * HOUR))
    def test_a_chain_is_valid_exactly_before_its_earliest_expiry(self, offset: int) -> None:
        keys = make_keys()
        trust = TrustContext(roots=[keys.root.did], local_did=keys.node.did)
        parent = grant_alice(keys)
        child = delegate(keys.alice, parent, keys.bob.did, expires_ns=NOW + HOUR // 2)
        now = NOW + offset
        if now < NOW + HOUR // 2:
            trust.authorize(keys.bob.did, Action.INVOKE, COMMIT, [child], now)
        else:
            with pytest.raises(TokenExpired):
                trust.authorize(keys.bob.did, Action.INVOKE, COMMIT, [child], now)


class TestRequireAnchors:
    """A require anchor admits another organisation's root, and only within its scope."""

    @pytest.fixture
    def anchored(self, trust: TrustContext, keys: Keys) -> TrustContext:
        # root admits "stranger" (another org's root) for /dms/deployment, one level of delegation
        anchor = grant(
            keys.root,
            keys.stranger.did,
            capabilities=("/dms/deployment",),
            expires_ns=NOW + HOUR,
            depth=1,
        )
        trust.add_require_anchor(anchor)
        return trust

    def test_the_anchored_did_may_act_within_the_anchor(
        self, anchored: TrustContext, keys: Keys
    ) -> None:
        anchored.authorize(keys.stranger.did, Action.INVOKE, COMMIT, [], NOW)
        with pytest.raises(Unauthorized):
            anchored.authorize(keys.stranger.did, Action.INVOKE, "/dms/node/offboard", [], NOW)

    def test_a_chain_rooted_at_the_anchored_did_passes(
        self, anchored: TrustContext, keys: Keys
    ) -> None:
        their = grant(keys.stranger, keys.bob.did, capabilities=(COMMIT,), expires_ns=NOW + HOUR)
        anchored.authorize(keys.bob.did, Action.INVOKE, COMMIT, [their], NOW)

    def test_a_chain_wider_than_the_anchor_is_refused(
        self, anchored: TrustContext, keys: Keys
    ) -> None:
        their = grant(keys.stranger, keys.bob.did, capabilities=("/dms",), expires_ns=NOW + HOUR)
        with pytest.raises(DelegationError, match="capabilities"):
            anchored.authorize(keys.bob.did, Action.INVOKE, COMMIT, [their], NOW)

    def test_a_chain_deeper_than_the_anchor_allows_is_refused(
        self, anchored: TrustContext, keys: Keys
    ) -> None:
        their = grant(
            keys.stranger, keys.bob.did, capabilities=(COMMIT,), expires_ns=NOW + HOUR, depth=1
        )
        with pytest.raises(DelegationError, match="depth"):
            anchored.authorize(keys.bob.did, Action.INVOKE, COMMIT, [their], NOW)

    def test_a_revoked_anchor_admits_no_one(self, anchored: TrustContext, keys: Keys) -> None:
        anchored.revoke(revocation(keys.root, anchored.require_anchors[0]))
        their = grant(keys.stranger, keys.bob.did, capabilities=(COMMIT,), expires_ns=NOW + HOUR)
        with pytest.raises(Revoked):
            anchored.authorize(keys.bob.did, Action.INVOKE, COMMIT, [their], NOW)
        with pytest.raises(Revoked):
            anchored.authorize(keys.stranger.did, Action.INVOKE, COMMIT, [], NOW)

    def test_a_removed_anchor_admits_no_one(self, anchored: TrustContext, keys: Keys) -> None:
        assert anchored.remove_anchor(anchored.require_anchors[0].revocation_id)
        with pytest.raises(Unauthorized):
            anchored.authorize(keys.stranger.did, Action.INVOKE, COMMIT, [], NOW)

    def test_an_anchor_that_cannot_delegate_is_refused(
        self, trust: TrustContext, keys: Keys
    ) -> None:
        invoke_only = grant(
            keys.root,
            keys.stranger.did,
            action=Action.INVOKE,
            capabilities=("/",),
            expires_ns=NOW + HOUR,
        )
        with pytest.raises(DelegationError, match="action"):
            trust.add_require_anchor(invoke_only)

    def test_a_forged_anchor_is_refused(self, trust: TrustContext, keys: Keys) -> None:
        anchor = grant(keys.root, keys.stranger.did, capabilities=("/dms",), expires_ns=NOW + HOUR)
        with pytest.raises(InvalidSignature):
            trust.add_require_anchor(msgspec.structs.replace(anchor, capabilities=("/",)))


class TestProvideAnchors:
    """tokens_for picks the provide anchors that grant what an outgoing message needs."""

    def test_matching_tokens_are_returned_and_others_not(self, keys: Keys) -> None:
        ours = TrustContext(local_did=keys.alice.did)
        deployment = grant_alice(keys)
        node_only = grant(
            keys.root, keys.alice.did, capabilities=("/dms/node",), expires_ns=NOW + HOUR
        )
        for_other = grant_alice(keys, audience=keys.other_node.did)
        for token in (deployment, node_only, for_other):
            ours.add_provide_anchor(token)
        assert ours.tokens_for(keys.node.did, COMMIT, Action.INVOKE, NOW) == (deployment,)
        assert ours.tokens_for(keys.other_node.did, COMMIT, Action.INVOKE, NOW) == (
            deployment,
            for_other,
        )
        assert ours.tokens_for(keys.node.did, "/public/hello", Action.INVOKE, NOW) == ()
        assert (
            ours.tokens_for(keys.node.did, COMMIT, Action.INVOKE, NOW, subject=keys.bob.did) == ()
        )

    def test_expired_and_revoked_tokens_are_not_offered(self, keys: Keys) -> None:
        ours = TrustContext(local_did=keys.alice.did)
        expired = grant_alice(keys, expires_ns=NOW)
        revoked = grant_alice(keys)
        ours.add_provide_anchor(expired)
        ours.add_provide_anchor(revoked)
        ours.revoke(revocation(keys.root, revoked))
        assert ours.tokens_for(keys.node.did, COMMIT, Action.INVOKE, NOW) == ()

    def test_what_one_node_offers_the_other_accepts(self, trust: TrustContext, keys: Keys) -> None:
        ours = TrustContext(local_did=keys.alice.did)
        ours.add_provide_anchor(grant_alice(keys, audience=keys.node.did))
        offered = ours.tokens_for(keys.node.did, COMMIT, Action.INVOKE, NOW)
        trust.authorize(keys.alice.did, Action.INVOKE, COMMIT, offered, NOW)


class TestPersistence:
    """The context survives a restart, stays private, and refuses a damaged file."""

    def test_a_saved_context_loads_back_equal(
        self, tmp_path: Path, trust: TrustContext, keys: Keys
    ) -> None:
        trust.add_require_anchor(
            grant(keys.root, keys.stranger.did, capabilities=("/dms",), expires_ns=NOW + HOUR)
        )
        trust.add_provide_anchor(grant_alice(keys))
        trust.revoke(revocation(keys.root, grant_alice(keys)))
        path = trust.save(trust_path(tmp_path))
        loaded = TrustContext.load(path, local_did=keys.node.did)
        assert loaded.snapshot() == trust.snapshot()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert [p.name for p in tmp_path.iterdir()] == ["trust.json"]

    def test_revocations_survive_a_restart(
        self, tmp_path: Path, trust: TrustContext, keys: Keys
    ) -> None:
        token = grant_alice(keys)
        trust.revoke(revocation(keys.root, token))
        trust.save(tmp_path / "trust.json")
        loaded = TrustContext.load(tmp_path / "trust.json", local_did=keys.node.did)
        with pytest.raises(Revoked):
            loaded.authorize(keys.alice.did, Action.INVOKE, COMMIT, [token], NOW)

    def test_a_missing_file_is_an_empty_context_unless_required(self, tmp_path: Path) -> None:
        assert TrustContext.load(tmp_path / "none.json").snapshot().roots == ()
        with pytest.raises(TrustStoreError, match="does not exist"):
            TrustContext.load(tmp_path / "none.json", missing_ok=False)

    def test_create_refuses_to_overwrite(self, tmp_path: Path, keys: Keys) -> None:
        created = TrustContext.create(tmp_path / "trust.json")
        created.add_root(keys.root.did)
        created.save()
        with pytest.raises(TrustStoreError, match="already exists"):
            TrustContext.create(tmp_path / "trust.json")
        assert TrustContext.load(tmp_path / "trust.json").roots == (keys.root.did,)

    def test_a_hand_widened_anchor_in_the_file_is_refused(
        self, tmp_path: Path, trust: TrustContext, keys: Keys
    ) -> None:
        trust.add_provide_anchor(grant_alice(keys))
        path = trust.save(tmp_path / "trust.json")
        path.write_bytes(path.read_bytes().replace(b'"/dms/deployment"', b'"/"'))
        with pytest.raises(TrustStoreError, match="does not verify"):
            TrustContext.load(path)

    @pytest.mark.parametrize(
        "content",
        [b"", b"[]", b'{"roots": ["did:web:x"]}', b'{"version": 9}'],
        ids=["empty", "list", "bad-root", "future-version"],
    )
    def test_a_damaged_file_is_refused(self, tmp_path: Path, content: bytes) -> None:
        path = tmp_path / "trust.json"
        path.write_bytes(content)
        with pytest.raises(TrustStoreError):
            TrustContext.load(path)

    def test_a_root_must_be_a_did(self, trust: TrustContext) -> None:
        with pytest.raises(InvalidDID):
            trust.add_root("alice")


def _payload(token: Token) -> bytes:
    return b"dms-token-v1\x00" + msgspec.json.encode(msgspec.structs.replace(token, signature=b""))
