"""NAE execution node core: messages, config, signing, order state, the Optimus client and the CLI.

Nothing in this package imports `actors/` or `adapters/` (only the CLI wires them together).
"""

__version__ = "0.1.0"
