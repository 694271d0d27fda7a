"""Handles: how one actor names another, on this node or any other."""

from __future__ import annotations

import msgspec


class Address(msgspec.Struct, frozen=True, array_like=True):
    """Where an actor lives: the host's peer id and the actor's inbox on that host."""

    host: str
    inbox: str


class Handle(msgspec.Struct, frozen=True, array_like=True):
    """An actor's name: ``id`` (its public key, hex), its ``did`` and its ``address``."""

    id: str
    did: str
    address: Address

    def __str__(self) -> str:
        return f"{self.address.inbox}@{self.address.host}"


NOBODY = Handle(id="", did="", address=Address(host="", inbox=""))
"""The ``to`` of a broadcast envelope: topic messages are addressed to no one in particular."""
