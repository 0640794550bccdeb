"""bench.profile: the processes it samples, found by the ports they listen on in the node's session."""

from __future__ import annotations

import os
import subprocess
import sys

from bench.profile import actor_pids

_LISTENER = """
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True)
time.sleep(60)
"""


def _listener() -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-c", _LISTENER], stdout=subprocess.PIPE, text=True)
    return proc, int(proc.stdout.readline())


def test_validator_engine_and_each_broker_once_by_port():
    procs = [_listener() for _ in range(3)]
    (v, vp), (e, ep), (b, bp) = procs
    try:
        endpoints = {"intake": "tcp://127.0.0.1:%d" % vp, "engine": "tcp://127.0.0.1:%d" % ep,
                     "engine:native": "tcp://127.0.0.1:%d" % ep, "broker": "tcp://127.0.0.1:%d" % bp,
                     "broker:paper": "tcp://127.0.0.1:%d" % bp, "api": "http://127.0.0.1:1", "node_id": "n"}
        found = actor_pids(os.getpid(), endpoints)
    finally:
        for proc, _ in procs:
            proc.kill()
            proc.wait()
    # the broker under its own name, not twice under its alias "broker"
    assert found == {"validator": v.pid, "engine": e.pid, "broker-paper": b.pid}
