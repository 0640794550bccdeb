"""nae-client: what Optimus imports to talk to the NAE execution node (signing, messages, sync and
asyncio clients, the Redis fallback with a maximum age, execution reports replayed by sequence number).
No Ray, NautilusTrader or numba: pyzmq, msgspec and redis only."""

from nae_client.client import AsyncExecutionClient, ExecutionClient, prepare, send_execution_signal
from nae_client.errors import ClientError, StoreError, TransportError
from nae_client.http import HttpExecutionClient
from nae_client.replay import ReportLog, Sequenced, report_key, since_ms
from nae_client.wire import ExecKind, ExecutionReport, Reply, Status

__all__ = [
    "AsyncExecutionClient", "ClientError", "HttpExecutionClient", "ExecKind", "ExecutionClient", "ExecutionReport", "Reply",
    "ReportLog", "Sequenced", "Status", "StoreError", "TransportError", "prepare", "report_key",
    "send_execution_signal", "since_ms",
]
