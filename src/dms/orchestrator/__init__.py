"""The requester side of deployments: matching, bidding, commit, supervision, restore.

- matching/: feasibility -> rank -> plan, each stage recording why;
- view.py: the latest capacity advert of each provider;
- deployment.py: the Orchestrator actor of one deployment (place, supervise, tear down);
- service.py: the node's deployment behaviors, restore after a restart;
- records.py, repository.py: desired and observed state in SQLite;
- explain.py, messages.py: what users ask and get back.

Must not import: node, app, api, cli.
"""

from dms.orchestrator.service import OrchestratorService, ResultsReply

__all__ = ["OrchestratorService", "ResultsReply"]
