"""Configuration of the Schwab venue: defined once, in `node.config` (all config lives there)."""

from node.config import REFRESH_TOKEN_LIFETIME_S, SchwabConfig

__all__ = ["REFRESH_TOKEN_LIFETIME_S", "SchwabConfig"]
