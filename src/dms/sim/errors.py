"""The simulation's errors: a bad configuration, or a network that did not come up."""

from __future__ import annotations

from dms.errors import DMSError, InputError


class SimulationError(DMSError):
    """A simulated network that could not be built or did not settle in time."""


class InvalidSimulation(InputError):
    """A simulation setting out of range: names the setting, the value and what is accepted."""
