"""Waiting on a condition in a test: never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(pred: Callable[[], object], timeout_s: float = 30.0, poll_s: float = 0.05) -> None:
    """Until `pred()` is true, looked at every `poll_s` (0.05 s: a condition met is seen within 50 ms,
    not up to a whole slow poll later; pass more for a `pred` that reads a whole stream or table);
    fails the test ("timed out") after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(poll_s)
