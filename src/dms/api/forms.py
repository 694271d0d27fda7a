"""Request bodies of the REST API that are not behavior messages themselves.

They carry text as a user types it (``"4GiB"``, ``"0.5NTX"``); the route turns them into the
behavior's message (e.g. :meth:`dms.onboarding.OnboardRequest.parse`), which reports a bad value
with the field, the value and the forms accepted.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

Text = Annotated[str, msgspec.Meta(max_length=256)]


class _Form(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class OnboardForm(_Form, frozen=True, kw_only=True):
    """``POST /api/v1/onboarding``: the share of this machine to offer."""

    cpu: float | Text
    """Cores, fractions allowed: ``2``, ``1.5``."""
    ram: int | Text
    """``4GiB``, ``512MiB``, ``2GB`` or bytes."""
    disk: int | Text
    gpus: Annotated[tuple[Text, ...], msgspec.Meta(max_length=64)] = ()
    """``INDEX:VRAM`` for each GPU offered, e.g. ``0:8GiB``."""
    price: Text = ""
    """Per hour, with an optional currency: ``0.5NTX``."""
    location: Text = ""
    """``continent/country/city``, e.g. ``EU/DE/Berlin``."""


class CancelForm(_Form, frozen=True, kw_only=True):
    """``POST /api/v1/deployments/{id}/cancel``."""

    reason: Text = "cancelled by the user"


MAX_NS = 2**62
"""The largest time or duration in nanoseconds the API accepts (year 2116; 146 years)."""


class PruneForm(_Form, frozen=True, kw_only=True):
    """``POST /api/v1/deployments/prune``: forget finished deployments."""

    before_ns: Annotated[int, msgspec.Meta(ge=0, le=MAX_NS)] = 0
    """Only those that finished before this time (ns since the epoch; 0 = any time)."""
