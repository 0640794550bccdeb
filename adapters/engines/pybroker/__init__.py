"""PyBroker as a signal source (it has no live trading: see `source.py`). Importing this package
does not import pybroker; `run_backtest` does."""

from adapters.engines.pybroker.source import PyBrokerSignalSource, PyBrokerSourceConfig

__all__ = ["PyBrokerSignalSource", "PyBrokerSourceConfig"]
