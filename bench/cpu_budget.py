"""Where the CPU goes: each of the node's processes' CPU time over a run, per signal, by role.

On a small machine the signal path's latency is set by how busy the cores are: a process that is
ready waits for a core, so a stage of the budget table (node.stages) is long when the whole node asks
for more CPU than the machine has, wherever the extra is spent. This reads each process's CPU time
(user + system, from the OS) before and after a run and gives, per role, the CPU it spent per signal
and the cores it kept busy:

- the node's processes: the root of its process tree (`execnode up`'s process, or the bench's own
  when the bench started Ray) and every descendant, each named by its role: the actors by the ports
  they listen on (the intake: the validator, the leading engine's intake: the engine, another
  engine's: a standby, a broker adapter's) or by Ray's process title (`ray::LedgerActor`, ...); Ray's
  own processes, an embedded Redis or PostgreSQL by their names;
- the servers the node uses when they run on this machine: Redis (the process listening on its
  port) and the PostgreSQL backends serving the node's database (by the database's name in their
  process titles);
- the bench's own process (the client and the harness).

A process that exits during the run counts with what it had spent at the last read before it exited
(nothing is read after): a run with a kill reads low.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil

#: Ray's process titles of the node's singleton actors -> role
_TITLES = {
    "ray::LedgerActor": "ledger", "ray::ReconcilerActor": "reconciler", "ray::Supervisor": "supervisor",
    "ray::RelayActor": "relay", "ray::ApiActor": "api",
}
#: the budget table's order (roles not named come after, by CPU)
ORDER = ("client", "validator", "redis", "engine", "standby", "broker", "relay", "ledger", "postgres",
         "reconciler", "supervisor", "api", "execnode up", "ray", "other")


def _port(endpoint: str) -> int | None:
    tail = endpoint.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _listening(proc: psutil.Process) -> set[int]:
    try:
        return {c.laddr.port for c in proc.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}
    except (psutil.Error, OSError):
        return set()


def port_roles(endpoints: dict[str, str]) -> dict[int, str]:
    """Listening port -> role, from the node's endpoints (endpoints.json or the runtime's registry)."""
    roles: dict[int, str] = {}
    leader = _port(endpoints.get("engine", ""))
    for name, endpoint in endpoints.items():
        port = _port(endpoint) if isinstance(endpoint, str) and endpoint.startswith("tcp://") else None
        if port is None:
            continue
        if name == "intake":
            roles[port] = "validator"
        elif name.startswith("engine"):
            roles.setdefault(port, "engine" if port == leader else "standby")
        elif name.startswith("broker"):
            roles[port] = "broker"
    return roles


def _role_of(proc: psutil.Process, ports: dict[int, str], root: int) -> str:
    try:
        cmd = proc.cmdline()
        name = proc.name()
    except (psutil.Error, OSError):
        return "other"
    title = cmd[0] if cmd else name
    for port in _listening(proc):
        if port in ports:
            return ports[port]
    for prefix, role in _TITLES.items():
        if title.startswith(prefix):
            return role
    if "redis-server" in title or name.startswith("redis"):
        return "redis"
    if name.startswith("postgres") or title.startswith("postgres"):
        return "postgres"
    if title.startswith("ray::") or "ray" in os.path.basename(title) or any("/ray/" in c for c in cmd[:2]):
        return "ray"
    if proc.pid == root:
        return "execnode up"
    return "other"


def node_processes(root: int, endpoints: dict[str, str], redis_url: str = "", database: str = "") -> dict[int, str]:
    """pid -> role for the node rooted at `root` (its descendants), the Redis of `redis_url` and the
    PostgreSQL backends of `database` on this machine, and the bench's own process ("client")."""
    ports = port_roles(endpoints)
    me = os.getpid()
    out: dict[int, str] = {}
    try:
        tree = [psutil.Process(root)]
        tree += tree[0].children(recursive=True)
    except psutil.Error:
        tree = []
    for proc in tree:
        out[proc.pid] = "client" if proc.pid == me else _role_of(proc, ports, root)
    out[me] = "client"
    redis_port = _port(redis_url.split("/")[2]) if redis_url.count("/") >= 2 else None
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        if proc.pid in out:
            continue
        cmd = " ".join(proc.info.get("cmdline") or [])
        if database and cmd.startswith("postgres") and (" " + database + " ") in cmd:
            out[proc.pid] = "postgres"
        elif redis_port and (proc.info.get("name") or "").startswith("redis") and redis_port in _listening(proc):
            out[proc.pid] = "redis"
    return out


def _slices(pid: int) -> int | None:
    """Times the process's threads were put on a CPU (the third field of each thread's
    /proc/<pid>/task/<tid>/schedstat): its wake-ups plus its preemptions. A thread that exited is
    not counted (its slices leave with it)."""
    total = 0
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return None
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[2])
        except (OSError, IndexError, ValueError):
            continue
    return total


def _cpu_s(pid: int) -> float | None:
    try:
        t = psutil.Process(pid).cpu_times()
    except (psutil.Error, OSError):
        return None
    return t.user + t.system


@dataclass
class CpuMeter:
    """CPU time of `roles`' processes (pid -> role) between `start()` and `stop(n)`."""

    roles: dict[int, str]

    def start(self) -> CpuMeter:
        self._t0 = time.monotonic()
        self._before = {pid: _cpu_s(pid) for pid in self.roles}
        self._slices0 = {pid: _slices(pid) for pid in self.roles}
        return self

    def stop(self, signals: int) -> dict:
        """Per role: CPU microseconds per signal and the cores it kept busy; `cores_busy` the sum,
        `cpus` the machine's, so `cores_busy / cpus` near 1 means the run waited for cores."""
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        spent: dict[str, float] = {}
        slices: dict[str, int] = {}
        for pid, role in self.roles.items():
            s0, s1 = self._slices0.get(pid), _slices(pid)
            if s0 is not None and s1 is not None:
                slices[role] = slices.get(role, 0) + max(s1 - s0, 0)
            before, after = self._before.get(pid), _cpu_s(pid)
            if before is None or after is None:
                continue
            spent[role] = spent.get(role, 0.0) + max(after - before, 0.0)
        rank = {r: i for i, r in enumerate(ORDER)}
        rows = [
            {"role": role, "cpu_us_per_signal": round(s * 1e6 / max(signals, 1), 1), "cores": round(s / elapsed, 3),
             "slices_per_signal": round(slices.get(role, 0) / max(signals, 1), 2)}
            for role, s in sorted(spent.items(), key=lambda kv: (rank.get(kv[0], len(ORDER)), -kv[1]))
        ]
        node = sum(s for role, s in spent.items() if role != "client")
        return {
            "signals": signals, "seconds": round(elapsed, 2), "cpus": psutil.cpu_count() or 1,
            "cores_busy": round(sum(spent.values()) / elapsed, 3),
            "node_cpu_us_per_signal": round(node * 1e6 / max(signals, 1), 1),
            "node_slices_per_signal": round(sum(n for role, n in slices.items() if role != "client") / max(signals, 1), 2),
            "roles": rows,
        }


def cpu_table(cpu: dict, title: str) -> str:
    """The budget in CPU: one line per role."""
    lines = [f"{title}: CPU over the paced run ({cpu['signals']} signals in {cpu['seconds']} s): "
             f"{cpu['cores_busy']:.2f} of {cpu['cpus']} cores busy; the node {cpu['node_cpu_us_per_signal']:.0f} us a signal",
             f"  {'role':<12} {'us/signal':>10} {'cores':>6} {'slices/signal':>14}"]
    lines += [f"  {r['role']:<12} {r['cpu_us_per_signal']:>10.1f} {r['cores']:>6.2f} {r.get('slices_per_signal', 0.0):>14.2f}"
              for r in cpu["roles"]]
    return "\n".join(lines)
