"""Ensembles and jobs: what a user writes, and what a provider does with its share of it.

Owns: the ensemble spec (spec.py, load.py, validate.py, yamlsafe.py, schema.py). Must not import
orchestrator, node, api or cli.
"""

from dms.jobs.errors import InvalidEnsemble
from dms.jobs.load import dump_ensemble, load_ensemble, parse_ensemble, to_document
from dms.jobs.spec import (
    AllocationSpec,
    EdgeSpec,
    Ensemble,
    Execution,
    FailureRecovery,
    HealthCheck,
    NodeSpec,
    PortSpec,
    RecoveryPolicy,
    ResourcesSpec,
)

__all__ = [
    "AllocationSpec",
    "EdgeSpec",
    "Ensemble",
    "Execution",
    "FailureRecovery",
    "HealthCheck",
    "InvalidEnsemble",
    "NodeSpec",
    "PortSpec",
    "RecoveryPolicy",
    "ResourcesSpec",
    "dump_ensemble",
    "load_ensemble",
    "parse_ensemble",
    "to_document",
]
