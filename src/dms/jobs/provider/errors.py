"""Errors of the provider side of the deployment protocol.

::

    OrchestrationError (dms.errors)
     +-- ProviderError
          +-- UnknownBid              a commit or revert names a bid this node never made
          +-- UnknownSlot             an allocate names a slot that was never committed here
          +-- SlotClosed              the slot (or bid) was reverted, released or expired: use a new id
          +-- RequestConflict         an id repeated with other arguments
          +-- NotTheOrchestrator      the caller is not the orchestrator the bid was made for
          |                           (also a SecurityError: travels as ``unauthorized``)
          +-- AllocationEnded         restart of an allocation that has ended
          +-- InvalidManifest         a manifest field a provider cannot run (also an InputError)
          +-- BadRequest              a request field out of range (also an InputError)
          +-- RefusedPath             a result path outside the results folder (also an InputError)
"""

from __future__ import annotations

from dms.errors import InputError, OrchestrationError, SecurityError


class ProviderError(OrchestrationError):
    """A deployment-protocol request this provider cannot apply."""


class UnknownBid(ProviderError):
    def __init__(self, bid_id: str) -> None:
        self.bid_id = bid_id
        super().__init__(f"bid_id: {bid_id!r} is not a bid of this provider (or it was forgotten)")


class UnknownSlot(ProviderError):
    def __init__(self, slot_id: str) -> None:
        self.slot_id = slot_id
        super().__init__(f"slot_id: {slot_id!r} was never committed on this provider; commit first")


class SlotClosed(ProviderError):
    def __init__(self, kind: str, ident: str, why: str) -> None:
        self.ident = ident
        super().__init__(f"{kind}: {ident!r} {why}; nothing is revived, use a new id")


class RequestConflict(ProviderError):
    def __init__(self, kind: str, ident: str, detail: str) -> None:
        self.ident = ident
        super().__init__(f"{kind}: {ident!r} was already used with other arguments ({detail})")


class NotTheOrchestrator(ProviderError, SecurityError):
    def __init__(self, caller: str, what: str, allowed: str) -> None:
        self.caller = caller
        super().__init__(f"{caller} may not {what}: only {allowed} may")


class AllocationEnded(ProviderError):
    def __init__(self, allocation_id: str, status: str, action: str) -> None:
        self.allocation_id = allocation_id
        super().__init__(f"allocation {allocation_id!r} is {status}: cannot {action} it")


class InvalidManifest(InputError, ProviderError):
    """A manifest this provider cannot run: names the field, the value, what is accepted."""


class BadRequest(InputError, ProviderError):
    """A request field out of range (an offset, a limit, a hold time, a run number)."""


class RefusedPath(InputError, ProviderError):
    """A result path that is not a file inside the allocation's results folder."""
