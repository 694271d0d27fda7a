"""Shared keys and clock values for the security tests."""

from __future__ import annotations

import msgspec
import pytest

from dms.security import KeyPair, TrustContext

SECOND = 1_000_000_000
NOW = 1_700_000_000 * SECOND
"""A fixed wall-clock time: every test passes time in, none reads the real clock."""


class Keys(msgspec.Struct, frozen=True):
    root: KeyPair
    alice: KeyPair
    bob: KeyPair
    carol: KeyPair
    node: KeyPair
    other_node: KeyPair
    stranger: KeyPair


def make_keys() -> Keys:
    names = Keys.__struct_fields__
    return Keys(*(KeyPair.from_seed(bytes([i + 1]) * 32) for i in range(len(names))))


@pytest.fixture
def keys() -> Keys:
    return make_keys()


@pytest.fixture
def trust(keys: Keys) -> TrustContext:
    """A node's trust context: ``root`` is trusted, the node is ``node``."""
    return TrustContext(roots=[keys.root.did], local_did=keys.node.did)
