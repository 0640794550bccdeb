"""Configuration of the IBKR venue: defined once, in `node.config` (all config lives there)."""

from node.config import IbkrConfig, MaintenanceWindow

__all__ = ["IbkrConfig", "MaintenanceWindow"]
