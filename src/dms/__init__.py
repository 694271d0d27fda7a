"""dms: a device management service for a decentralized compute network.

Layers, bottom up (each imports only those below it):

* ``types``: value types (units, Resources, Capability, ...), no I/O;
* ``security``, ``actor``: identities, signed envelopes, actors, supervision;
* ``network``: the Network protocol, in-memory and libp2p implementations;
* ``resources``, ``onboarding``, ``executor``: what a provider has and how it runs work;
* ``jobs``, ``orchestrator``: ensembles, the provider side and the requester side of deployments;
* ``node``, ``app``, ``api``, ``cli``: the node actor, start-up, REST and the command line.
"""

__version__ = "0.1.0"
