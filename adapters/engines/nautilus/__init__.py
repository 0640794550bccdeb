"""The NautilusTrader engine: a Nautilus kernel in a child process, bridged to the node over ZeroMQ.

Importing this package does not import nautilus_trader (only the child does):
`NautilusEngineProcess(cfg, broker_endpoint).start()` -> {"intake": ..., "events": ...}.
"""

from adapters.engines.nautilus.config import NautilusEngineConfig
from adapters.engines.nautilus.host import EngineStartError, NautilusEngineProcess

__all__ = ["EngineStartError", "NautilusEngineConfig", "NautilusEngineProcess"]
