"""The client: defined once in the nae_client distribution (client/nae_client/client.py), the one
Optimus installs; re-exported here for the node's CLI, demo, tests and benchmarks."""

from nae_client.client import (  # noqa: F401
    AsyncExecutionClient,
    ExecutionClient,
    SignalLike,
    prepare,
    reply_dict,
    send_execution_signal,
)
