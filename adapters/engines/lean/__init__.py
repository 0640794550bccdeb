"""The LEAN bridge: `NaeBridgeAlgorithm.cs` runs inside a self-hosted LEAN and connects to
`LeanBridge`, a venue for the node's broker adapter (see docs/lean.md).

`BrokerHost("lean", bind_host, LeanBridge(LeanBridgeConfig(port=5570)))` puts LEAN behind the
broker gate; `fake_lean.FakeLean` is the test peer speaking the same protocol.
"""

from adapters.engines.lean.bridge import LeanBridge
from adapters.engines.lean.config import LeanBridgeConfig

__all__ = ["LeanBridge", "LeanBridgeConfig"]
