"""The one exception tree of dms.

Every error dms raises on purpose derives from :class:`DMSError`. Foreign exceptions are
translated at the boundary (``raise SomeDMSError(...) from exc``) so callers catch only ours.
Messages name the field, the value and what would be accepted.

::

    DMSError
     +-- InputError                 bad input from a user or a peer: field, value, accepted
     |    +-- UnitError             a size, clock, duration, core count or price that does not parse
     |    +-- SpecError             an ensemble file that does not validate
     +-- ConfigError                a config file or DMS_* variable that does not validate
     +-- ResourceError
     |    +-- InsufficientResources a subtraction that would go negative (dimension, needed, available)
     |    +-- IncompatibleRequirements  two requirements that cannot be combined
     |    +-- OnboardingError       onboarding refused or impossible
     +-- SecurityError              signatures, tokens, trust (see dms.security)
     +-- ActorError                 delivery, invoke deadlines, stopped actors (see dms.actor)
     +-- NetworkError               transport failures (see dms.network)
     +-- ExecutorError              workload execution failures (see dms.executor)
     +-- OrchestrationError         deployment failures (see dms.orchestrator)
"""

from __future__ import annotations


class _Nothing:
    def __repr__(self) -> str:
        return "NOTHING"


NOTHING: object = _Nothing()
"""The value of an InputError about a whole document rather than one value in it."""


class DMSError(Exception):
    """Base class of every error dms raises on purpose."""


class InputError(DMSError, ValueError):
    """Input that does not validate. Names the field, the value and what is accepted."""

    def __init__(self, field: str, value: object, accepted: str, *, detail: str = "") -> None:
        self.field = field
        self.value = value
        self.accepted = accepted
        self.detail = detail
        where = f"{field}: " if field else ""
        reason = detail or f"is not {accepted}"
        if value is NOTHING:
            super().__init__(f"{where}{reason}")
            return
        shown = repr(value) if not isinstance(value, str) else f'"{value}"'
        super().__init__(f"{where}{shown} {reason}")


class UnitError(InputError):
    """A quantity (size, clock, duration, cores, price) that does not parse."""


class SpecError(InputError):
    """An ensemble specification that does not validate."""


class ConfigError(DMSError):
    """A configuration file or ``DMS_*`` environment variable that does not validate."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"config {key}: {message}" if key else f"config: {message}")


class ResourceError(DMSError):
    """Resource accounting failures."""


class InsufficientResources(ResourceError):
    """A subtraction that would go negative: names the dimension, what is needed and available."""

    def __init__(self, dimension: str, needed: str, available: str, *, detail: str = "") -> None:
        self.dimension = dimension
        self.needed = needed
        self.available = available
        text = f"not enough {dimension}: needed {needed}, available {available}"
        super().__init__(f"{text} ({detail})" if detail else text)


class IncompatibleRequirements(ResourceError):
    """Two requirements that cannot be combined (e.g. two different CPU architectures)."""

    def __init__(self, dimension: str, left: object, right: object) -> None:
        self.dimension = dimension
        super().__init__(f"cannot combine {dimension}: {left!r} and {right!r} conflict")


class OnboardingError(ResourceError):
    """Onboarding, re-onboarding or offboarding was refused."""


class SecurityError(DMSError):
    """Signature, token or trust failures."""


class ActorError(DMSError):
    """Actor delivery and request/reply failures."""


class NetworkError(DMSError):
    """Transport failures."""


class ExecutorError(DMSError):
    """Workload execution failures."""


class OrchestrationError(DMSError):
    """Deployment failures."""
