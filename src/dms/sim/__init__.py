"""Simulated networks: thousands of real provider and orchestrator nodes in one process.

Layers, bottom up: ``errors``; ``profiles`` (simulated machines) and ``workload`` (ensembles to
deploy); ``store`` (SQLite in the loop's thread), ``executor`` (the null executor with
bookkeeping GPUs), ``trust`` (who trusts whom); ``nodes`` (one provider or orchestrator
assembled from the real parts); ``audit`` (is anything over-allocated?); ``simulation``
(:class:`Simulation`: the fabric, the nodes, submitting and watching deployments).
Must not import: dms.node, dms.app, dms.api, dms.cli.
"""

from dms.sim.audit import Audit, ProviderAudit
from dms.sim.errors import InvalidSimulation, SimulationError
from dms.sim.nodes import ObservedOrchestrator, OrchestratorNode, ProviderNode, StatusLog
from dms.sim.profiles import PLACES, ProviderProfile, provider_profiles
from dms.sim.simulation import OrchestratorSettings, Simulation, SimulationConfig, run
from dms.sim.store import MEMORY, InlineDatabase
from dms.sim.trust import Trust, TrustMode
from dms.sim.workload import WorkItem, WorkloadSpec, ensembles

__all__ = [
    "MEMORY",
    "PLACES",
    "Audit",
    "InlineDatabase",
    "InvalidSimulation",
    "ObservedOrchestrator",
    "OrchestratorNode",
    "OrchestratorSettings",
    "ProviderAudit",
    "ProviderNode",
    "ProviderProfile",
    "Simulation",
    "SimulationConfig",
    "SimulationError",
    "StatusLog",
    "Trust",
    "TrustMode",
    "WorkItem",
    "WorkloadSpec",
    "ensembles",
    "provider_profiles",
    "run",
]
