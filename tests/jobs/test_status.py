"""Lifecycles: only the documented moves are allowed; final states are final."""

from __future__ import annotations

import pytest

from dms.jobs.status import AllocationStatus, DeploymentStatus, InvalidTransition


class TestDeploymentLifecycle:
    """Preparing -> Committing -> Provisioning -> Running -> Completed, with retries and failure."""

    def test_happy_path(self) -> None:
        status = DeploymentStatus.PREPARING
        for new in ("Committing", "Provisioning", "Running", "Completed"):
            status = status.check(DeploymentStatus(new))
        assert status.final

    def test_a_failed_commit_goes_back_to_preparing(self) -> None:
        assert DeploymentStatus.COMMITTING.can_become(DeploymentStatus.PREPARING)

    @pytest.mark.parametrize("final", [DeploymentStatus.COMPLETED, DeploymentStatus.FAILED])
    def test_final_states_are_final(self, final: DeploymentStatus) -> None:
        for new in DeploymentStatus:
            with pytest.raises(InvalidTransition, match=f"from {final.value} to {new.value}"):
                final.check(new)

    def test_cannot_skip_commit(self) -> None:
        with pytest.raises(InvalidTransition):
            DeploymentStatus.PREPARING.check(DeploymentStatus.RUNNING)


class TestAllocationLifecycle:
    """pending -> starting -> running -> completed; restarts go through restarting."""

    def test_restart_cycle(self) -> None:
        status = AllocationStatus.PENDING
        for new in ("starting", "running", "restarting", "starting", "running", "completed"):
            status = status.check(AllocationStatus(new))
        assert status.final

    def test_every_state_reaches_a_final_state(self) -> None:
        for start in AllocationStatus:
            seen, todo = {start}, [start]
            while todo:
                current = todo.pop()
                for new in AllocationStatus:
                    if current.can_become(new) and new not in seen:
                        seen.add(new)
                        todo.append(new)
            assert any(s.final for s in seen)
