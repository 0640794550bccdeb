"""What `execnode up` tells the operator (NodeRuntime.watch): an actor that dies, and its return; a
restarted supervisor's lines too."""

from __future__ import annotations

import os
import signal
import time

import pytest


@pytest.fixture()
def node(fresh_node):
    return fresh_node


def test_a_killed_validator_is_told_dead_then_back_and_the_node_goes_on(node):
    lines: list[str] = []
    assert node.watch(lines.append) is None and lines == []
    os.kill(node.call_supervisor("pid", "validator"), signal.SIGKILL)
    deadline = time.monotonic() + 60
    while "validator back" not in lines and time.monotonic() < deadline:
        assert node.watch(lines.append) is None  # the node can be brought back: no exit reason
        time.sleep(0.2)
    assert lines[:2] == ["validator died", "validator back"], lines
    # then the supervisor itself: its restarted process's lines still reach `execnode up` (they were
    # numbered from 0 again, below what it had seen, and were hidden)
    os.kill(node.call_supervisor("pid", "supervisor"), signal.SIGKILL)
    deadline = time.monotonic() + 60
    while not any(ln.startswith("supervisor restarted") for ln in lines) and time.monotonic() < deadline:
        assert node.watch(lines.append) is None
        time.sleep(0.2)
    assert any(ln.startswith("supervisor restarted") for ln in lines), lines
