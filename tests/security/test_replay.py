"""Replay protection: a (sender, nonce) is accepted once until it expires."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dms.security import Expired, ExpiryTooFar, Replayed, ReplayGuard
from tests.security.conftest import NOW, SECOND

ALICE, BOB = "did:key:alice", "did:key:bob"


class TestReplayGuard:
    """The guard refuses the second delivery and forgets a message once it has expired."""

    def test_a_replayed_message_is_refused(self) -> None:
        guard = ReplayGuard()
        guard.check(ALICE, "n1", NOW + 30 * SECOND, NOW)
        with pytest.raises(Replayed, match="n1") as info:
            guard.check(ALICE, "n1", NOW + 30 * SECOND, NOW + SECOND)
        assert info.value.sender == ALICE

    def test_the_same_nonce_from_another_sender_is_not_a_replay(self) -> None:
        guard = ReplayGuard()
        guard.check(ALICE, "n1", NOW + 30 * SECOND, NOW)
        guard.check(BOB, "n1", NOW + 30 * SECOND, NOW)

    def test_an_expired_message_is_refused(self) -> None:
        with pytest.raises(Expired):
            ReplayGuard().check(ALICE, "n1", NOW, NOW)

    def test_an_expiry_beyond_the_window_is_refused(self) -> None:
        guard = ReplayGuard(window_ns=60 * SECOND)
        with pytest.raises(ExpiryTooFar):
            guard.check(ALICE, "n1", NOW + 61 * SECOND, NOW)
        assert len(guard) == 0

    def test_memory_is_released_once_messages_expire(self) -> None:
        guard = ReplayGuard()
        for i in range(100):
            guard.check(ALICE, f"n{i}", NOW + SECOND, NOW)
        assert len(guard) == 100
        guard.prune(NOW + SECOND)
        assert len(guard) == 0

    @given(st.lists(st.tuples(st.sampled_from([ALICE, BOB]), st.integers(0, 5)), max_size=40))
    def test_each_pair_is_accepted_exactly_once(self, deliveries: list[tuple[str, int]]) -> None:
        guard = ReplayGuard()
        accepted: list[tuple[str, int]] = []
        for sender, nonce in deliveries:
            try:
                guard.check(sender, str(nonce), NOW + SECOND, NOW)
                accepted.append((sender, nonce))
            except Replayed:
                assert (sender, nonce) in accepted
        assert sorted(accepted) == sorted(set(deliveries))
