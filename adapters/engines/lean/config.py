"""Configuration of the LEAN bridge: defined once, in `node.config` (all config lives there)."""

from node.config import LeanBridgeConfig

__all__ = ["LeanBridgeConfig"]
