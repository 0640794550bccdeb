"""bench.cpu_budget: which role each of the node's processes plays, and the CPU it spent per signal."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.cpu_budget import CpuMeter, cpu_table, node_processes, port_roles

# a child that listens on a port (printed first), then burns CPU for the given seconds, then sleeps
_CHILD = """
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True)
sys.stdin.readline()
end = time.process_time() + float(sys.argv[1])
while time.process_time() < end:
    pass
print("done", flush=True)
time.sleep(60)
"""


def _child(burn_s: float) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(burn_s)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    return proc, int(proc.stdout.readline())


def _measured(proc: subprocess.Popen, role: str, signals: int) -> dict:
    """The child's CPU as `role` from "go" to its "done", over `signals`."""
    meter = CpuMeter({proc.pid: role}).start()
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "done"
    return meter.stop(signals)


def test_port_roles_name_the_intake_the_leader_its_standbys_and_the_brokers():
    ep = {"intake": "tcp://127.0.0.1:5555", "engine": "tcp://127.0.0.1:6001", "engine:native": "tcp://127.0.0.1:6001",
          "engine:native-standby": "tcp://127.0.0.1:6002", "broker:paper": "tcp://127.0.0.1:7001",
          "api": "http://127.0.0.1:8080", "node_id": "n", "pid": 12}
    assert port_roles(ep) == {5555: "validator", 6001: "engine", 6002: "standby", 7001: "broker"}


def test_a_child_is_named_by_its_port_and_its_cpu_is_counted_per_signal():
    proc, port = _child(0.3)
    try:
        roles = node_processes(os.getpid(), {"intake": "tcp://127.0.0.1:%d" % port})
        assert roles[proc.pid] == "validator"
        assert roles[os.getpid()] == "client"
        cpu = _measured(proc, "validator", 1_000)
    finally:
        proc.kill()
        proc.wait()
    row = {r["role"]: r for r in cpu["roles"]}["validator"]
    assert 250.0 <= row["cpu_us_per_signal"] <= 600.0  # 0.3 s of CPU over 1,000 signals: ~300 us each
    assert cpu["node_cpu_us_per_signal"] == row["cpu_us_per_signal"]
    assert "validator" in cpu_table(cpu, "node")


def test_a_process_gone_before_the_end_counts_nothing_and_breaks_nothing():
    proc, port = _child(0.0)
    meter = CpuMeter({proc.pid: "engine"}).start()
    proc.kill()
    proc.wait()
    time.sleep(0.01)
    cpu = meter.stop(10)
    assert cpu["roles"] == [] and cpu["node_cpu_us_per_signal"] == 0.0


_WAKER = """
import sys, time
sys.stdin.readline()
for _ in range(300):
    time.sleep(0.001)
print("done", flush=True)
time.sleep(60)
"""


def test_a_process_that_wakes_300_times_counts_at_least_300_slices():
    """Slices (times on a CPU: wake-ups plus preemptions) per signal, from every thread's schedstat."""
    proc = subprocess.Popen([sys.executable, "-c", _WAKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.2)  # started and blocked on its stdin
        cpu = _measured(proc, "engine", 100)
    finally:
        proc.kill()
        proc.wait()
    row = {r["role"]: r for r in cpu["roles"]}["engine"]
    assert row["slices_per_signal"] >= 3.0  # 300 sleeps: 300 wake-ups over 100 signals, at the least
    assert cpu["node_slices_per_signal"] == row["slices_per_signal"]
    assert "slices/signal" in cpu_table(cpu, "node")
