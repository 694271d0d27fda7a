"""Errors of onboarding.

::

    OnboardingError (dms.errors)
     +-- InvalidOnboarding (also an InputError)   amounts outside the allowed ranges
     +-- NotOnboarded, Draining, AllocationsRunning, StillReserved   (from dms.resources)
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from dms.errors import InputError, OnboardingError


class Problem(msgspec.Struct, frozen=True):
    """One dimension out of range: the field, the value asked, the range allowed."""

    field: str
    asked: str
    allowed: str

    def describe(self) -> str:
        return f"{self.field}: {self.asked} asked; allowed {self.allowed}"


class InvalidOnboarding(InputError, OnboardingError):
    """Every problem found, not only the first, so one attempt shows all that must change."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        first = self.problems[0]
        InputError.__init__(self, first.field, first.asked, first.allowed)
        self.args = ("; ".join(p.describe() for p in self.problems),)
