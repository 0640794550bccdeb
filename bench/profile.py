"""py-spy profiles of the validator, the leading engine and the broker adapters under the paced run of the user's path.

    python -m bench.profile [--seconds 10] [--rate 1000] [--out reports/profile]

Starts `execnode up` as `bench.user_path` does, warms it up, then sends the Optimus-like stream at
`--rate` signals/s for `--seconds` + 2 s while `py-spy record` samples the validator's, the leading
engine's and each broker adapter's actor process (the ones listening on the intake's, the leading
engine's and the brokers' ports, inside the node's own session, so other nodes on the machine are never sampled). Writes
`<out>-validator.json`, `<out>-engine.json` and `<out>-broker*.json` (speedscope: open at https://www.speedscope.app)
and prints one JSON line: the files, the paced run's figures, and whether py-spy could attach.
py-spy is installed with `pip install py-spy` (not a dependency of the node).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import psutil

from bench.harness import run_paced, warm_up
from bench.user_path import UserPathTarget

def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def actor_pids(session_leader: int, endpoints: dict[str, str]) -> dict[str, int]:
    """role -> pid of the process, in the session of the `execnode up` we started, that listens on
    the validator's intake port / the leading engine's intake port (all actors are `ServiceActor`s,
    so their Ray titles do not tell them apart)."""
    ports = {"validator": _port(endpoints["intake"]), "engine": _port(endpoints["engine"])}
    for name, ep in sorted(endpoints.items(), reverse=True):  # "broker:<name>" before its alias "broker"
        if name.startswith("broker") and isinstance(ep, str) and ep.startswith("tcp://") and _port(ep) not in ports.values():
            ports[name.replace(":", "-")] = _port(ep)
    sid = os.getsid(session_leader)
    found: dict[str, int] = {}
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getsid(proc.pid) != sid:
                continue
            listening = {c.laddr.port for c in proc.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
        for role, port in ports.items():
            if port in listening:
                found[role] = proc.pid
    return found


async def profile(seconds: int, rate: float, out: str, gil: bool = False) -> dict:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    target = UserPathTarget(n_max=int(rate * (seconds + 4)) + 2_000)
    await target.start()
    result: dict = {"seconds": seconds, "rate_per_s": rate}
    try:
        await warm_up(target, 1_000, 0)
        pids = actor_pids(target._proc.pid, target.endpoints)
        result["pids"] = pids
        procs = {}
        for role, pid in pids.items():
            path = out + "-" + role + ".json"
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            procs[role] = (path, subprocess.Popen(
                [py_spy, "record", "-p", str(pid), "-d", str(seconds), "-r", "200", "--format", "speedscope",
                 "-o", path, "--nonblocking"] + (["--gil"] if gil else []), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        paced = await run_paced(target, rate, int(rate * (seconds + 2)), 1_000, fill_timeout_s=10.0)
        result["paced"] = paced.figures()
        files = {}
        for role, (path, proc) in procs.items():
            _, err = proc.communicate(timeout=60)
            files[role] = path if proc.returncode == 0 and Path(path).exists() else "py-spy failed: " + err.decode()[-300:]
        result["profiles"] = files
    finally:
        await target.stop()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--rate", type=float, default=1_000.0)
    p.add_argument("--out", default="reports/profile")
    p.add_argument("--gil", action="store_true",
                   help="sample only threads holding the GIL: the Python CPU, without the time a woken thread "
                        "waits for a core (which py-spy otherwise counts as active)")
    args = p.parse_args(argv)
    result = asyncio.run(profile(args.seconds, args.rate, args.out, args.gil))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0 if result.get("profiles") and all(v.endswith(".json") for v in result["profiles"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
