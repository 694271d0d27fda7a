"""The simulated machines' executor: the null executor, with bookkeeping-only GPUs.

A simulated provider onboards GPUs that do not exist; its workloads are scripted null
programs (see :func:`dms.jobs.provider.launch.null_program`). The real null executor refuses
GPU devices; this one accepts the devices the ResourceManager assigned and ignores them.
"""

from __future__ import annotations

from dms.executor import ExecutionRequest, NullExecutor


class SimExecutor(NullExecutor):
    def _check(self, request: ExecutionRequest) -> None:
        """Every request is fine: GPUs are only counted, never used."""
