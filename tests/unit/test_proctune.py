"""node.proctune: niceness and CPUs by role, on every thread of the process (run in a child process)."""

import json
import os
import subprocess
import sys

import pytest

from node.config import TuningConfig
from node.proctune import setting_for

_CHILD = """
import json, os, sys, threading
from node.config import TuningConfig
from node import proctune
stop = threading.Event()
t = threading.Thread(target=stop.wait); t.start()            # a thread that exists before the tuning
tuning = TuningConfig(**json.loads(sys.argv[1]))
out = {"done": proctune.apply(tuning, sys.argv[2])}
late = threading.Thread(target=stop.wait); late.start()      # one started after it inherits it
out["nice"] = sorted({os.getpriority(os.PRIO_PROCESS, int(tid)) for tid in os.listdir("/proc/self/task")})
out["cpus"] = sorted({c for tid in os.listdir("/proc/self/task") for c in os.sched_getaffinity(int(tid))})
if len(sys.argv) > 3:                                        # then the role changes (a standby promoted)
    out["after"] = proctune.apply(tuning, sys.argv[3])
    out["nice_after"] = sorted({os.getpriority(os.PRIO_PROCESS, int(tid)) for tid in os.listdir("/proc/self/task")})
stop.set()
print(json.dumps(out))
"""


def run_child(tuning: dict, *roles: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(tuning), *roles], capture_output=True, text=True,
                         timeout=60, check=True)
    return json.loads(out.stdout)


@pytest.mark.parametrize("table, role, expected", [
    ({"ledger": 5}, "ledger", 5),
    ({"engine": 3}, "engine:native", 3),  # the kind's entry
    ({"engine": 3, "engine:native": 1}, "engine:native", 1),  # the role's own entry first
    ({"ledger": 5}, "validator", None),
])
def test_a_role_takes_its_own_entry_else_its_kinds(table, role, expected):
    assert setting_for(table, role) == expected


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="per-thread niceness is Linux's")
def test_every_thread_of_the_process_is_niced_and_a_promotion_sets_it_back():
    out = run_child({"nice": {"standby": 5}}, "standby", "engine:native")
    assert out["done"]["nice"] == 5 and out["nice"] == [5]  # the thread started before the tuning too
    if os.geteuid() == 0:  # lowering a niceness needs CAP_SYS_NICE
        assert out["after"]["nice"] == 0 and out["nice_after"] == [0]
    else:
        assert "not permitted" in str(out["after"]["nice"])


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity here")
def test_cpus_by_role_on_every_thread():
    cpu = min(os.sched_getaffinity(0))
    out = run_child({"cpu_affinity": {"ledger": [cpu]}}, "ledger")
    assert out["done"]["cpus"] == [cpu] and out["cpus"] == [cpu]


def test_the_defaults_nice_the_ledger_and_empty_tables_change_nothing():
    assert TuningConfig().nice == {"ledger": 5, "reconciler": 5}
    out = run_child({"nice": {}, "isolate_intake": False}, "ledger")
    assert out["done"] == {"role": "ledger"} and out["nice"] == [os.getpriority(os.PRIO_PROCESS, 0)]


@pytest.mark.parametrize("role, n_cpus, expected", [
    ("validator", 2, [0]), ("ledger", 2, [1]), ("engine:native", 4, [1, 2, 3]), ("standby", 8, list(range(1, 8))),
    ("validator", 1, None), ("broker", 1, None), ("validator", None, None),
])
def test_the_intake_gets_the_first_cpu_alone_and_the_rest_the_others(role, n_cpus, expected):
    from node.proctune import intake_apart

    assert intake_apart(role, n_cpus) == expected


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2
                    or os.cpu_count() != len(os.sched_getaffinity(0)), reason="needs 2+ CPUs, all of them ours")
def test_by_default_the_validator_runs_alone_on_the_first_cpu_and_a_named_role_is_left_alone():
    assert TuningConfig().isolate_intake
    assert run_child({}, "validator")["cpus"] == [0]
    assert run_child({}, "ledger")["cpus"] == list(range(1, os.cpu_count()))
    everywhere = sorted(os.sched_getaffinity(0))
    assert run_child({"cpu_affinity": {"ledger": []}}, "ledger")["cpus"] == everywhere  # named: any CPU
    assert run_child({"isolate_intake": False}, "validator")["cpus"] == everywhere


def test_the_config_refuses_a_niceness_out_of_range():
    import msgspec

    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"nice": {"ledger": 25}}, TuningConfig)
