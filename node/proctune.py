"""Niceness and CPU affinity of an actor's process, by role, from `[tuning]` (node.config.TuningConfig).

On a small machine the intake (validator), the leading engine, the broker adapter, Redis and the
client share two cores with work that can wait: the ledger's drain into PostgreSQL, the
reconciler, hot standby engines. Linux gives each *thread* its own niceness and affinity (a
`setpriority(PRIO_PROCESS, 0)` or `sched_setaffinity(0)` changes the calling thread only), so both
are applied to every thread the process has (`/proc/self/task`); threads started later inherit
them from the thread that starts them.

`isolate_intake` (on by default): a role `cpu_affinity` does not name runs, on 2+ CPUs, on the first
CPU alone when it is the validator and on the others when it is not (`intake_apart`).

A role's settings: its own entry ("engine:native", "standby"), else its kind's ("engine"). With a
`nice` table set, a role it does not name runs at niceness 0 (a standby promoted to leader is set
back); with none, niceness is left alone. Affinity: absent or empty, unchanged. Lowering a niceness again (a standby promoted to leader) needs CAP_SYS_NICE; where
the process lacks it the niceness stays and `apply` says so (never an error: tuning is best effort).
"""

from __future__ import annotations

import os

from node.config import TuningConfig


def setting_for(table: dict, role: str):
    """The entry for `role`, else for its kind (`engine:native` -> `engine`), else None."""
    if role in table:
        return table[role]
    return table.get(role.split(":", 1)[0])


def _threads() -> list[int]:
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:  # not Linux: the calling thread only
        return [0]


def apply(tuning: TuningConfig, role: str) -> dict:
    """Set this process's niceness and CPUs for `role`; what was done, for the actor's log and stats."""
    done: dict = {"role": role}
    if tuning.nice:
        done["nice"] = _set_nice(setting_for(tuning.nice, role) or 0)
    cpus = setting_for(tuning.cpu_affinity, role)
    if cpus is None and tuning.isolate_intake:
        cpus = intake_apart(role, os.cpu_count())
    if cpus:
        done["cpus"] = _set_cpus(cpus)
    return done


def intake_apart(role: str, n_cpus: int | None) -> list[int] | None:
    """`isolate_intake`: with 2+ CPUs the validator runs on the first alone and every other role on
    the rest (the intake never waits for a core behind an engine, a standby or the ledger's drain);
    with one, nothing is pinned."""
    if not n_cpus or n_cpus < 2:
        return None
    return [0] if role == "validator" else list(range(1, n_cpus))


def _set_nice(nice: int) -> int | str:
    try:
        for tid in _threads():
            os.setpriority(os.PRIO_PROCESS, tid, nice)
    except PermissionError:
        return "not permitted (CAP_SYS_NICE): niceness left at " + str(os.getpriority(os.PRIO_PROCESS, 0))
    except (ProcessLookupError, OSError):
        pass  # a thread that ended meanwhile
    return nice


def _set_cpus(cpus: list[int]) -> list[int] | str:
    if not hasattr(os, "sched_setaffinity"):
        return "affinity not supported here"
    wanted = set(cpus) & os.sched_getaffinity(0) or set(cpus)
    try:
        for tid in _threads():
            os.sched_setaffinity(tid, wanted)
    except (ProcessLookupError, PermissionError):
        pass
    except OSError as exc:  # no such CPU on this machine
        return "not applied: " + str(exc)
    return sorted(wanted)
