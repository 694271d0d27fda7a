"""Errors of the orchestrator."""

from __future__ import annotations

from dms.errors import OrchestrationError


class UnknownDeployment(OrchestrationError):
    def __init__(self, deployment_id: str) -> None:
        self.deployment_id = deployment_id
        super().__init__(f"deployment_id: {deployment_id!r} is not a deployment of this node")


class UnknownAllocation(OrchestrationError):
    def __init__(self, deployment_id: str, allocation: str) -> None:
        super().__init__(
            f"allocation: {allocation!r} is not an allocation of deployment {deployment_id}"
        )
