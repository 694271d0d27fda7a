"""Suite-wide fixtures."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

import dms.actor.envelope as envelope_module
from dms.security import KeyPair


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """A test that configures logging (the CLI does) must not leave it to the next test."""
    yield
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)


class Verifications:
    """Counts envelope signature checks, by the public key checked."""

    def __init__(self) -> None:
        self.by_key: dict[bytes, int] = {}

    def of(self, keypair: KeyPair) -> int:
        return self.by_key.get(bytes(keypair.public_key), 0)

    @property
    def total(self) -> int:
        return sum(self.by_key.values())


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> Iterator[Verifications]:
    """Envelope signature checks made in this process during the test."""
    counter = Verifications()
    verify = envelope_module.verify_signature

    def counting(public_key: bytes, data: bytes, signature: bytes) -> bool:
        key = bytes(public_key)
        counter.by_key[key] = counter.by_key.get(key, 0) + 1
        return verify(public_key, data, signature)

    monkeypatch.setattr(envelope_module, "verify_signature", counting)
    yield counter
