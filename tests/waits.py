"""Waiting on a condition in a test: never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(pred: Callable[[], object], timeout_s: float = 30.0) -> None:
    """Until `pred()` is true, looked at every 0.2 s; fails the test ("timed out") after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
