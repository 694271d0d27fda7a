"""Onboarding: offering a share of this machine, changing it, taking it back.

``OnboardingService(manager, hardware, stop_allocation=...)`` is the Python API
(``onboard``, ``offboard``, ``status``, ``resources``, ``capability``); ``behaviors`` exposes it
as node behaviors. Validation rules are in :mod:`dms.onboarding.validate`.
"""

from dms.onboarding.errors import InvalidOnboarding, Problem
from dms.onboarding.records import (
    GPUShare,
    OffboardResult,
    OnboardingRecord,
    OnboardRequest,
    OnboardStatus,
    ResourcesView,
)
from dms.onboarding.service import OnboardingService, StopAllocation
from dms.onboarding.validate import validate

__all__ = [
    "GPUShare",
    "InvalidOnboarding",
    "OffboardResult",
    "OnboardRequest",
    "OnboardStatus",
    "OnboardingRecord",
    "OnboardingService",
    "Problem",
    "ResourcesView",
    "StopAllocation",
    "validate",
]
