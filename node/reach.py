"""Reaching a running node from the shell, within a deadline: where it is (`endpoints.json`, or a
Ray address), whether it is there at all (its pid, its Ray port), its supervisor over Ray, and
its own /health over HTTP. Every command of `execnode` that talks to a node goes through here, so
none of them can hang on a node that is gone (the kill switch included).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from node.config import NodeConfig
from node.errors import NodeError

#: cancelled when the command returns (node.cli.main)
DEADLINES: list[threading.Timer] = []


def join_ray_env() -> None:
    """A local cluster started by `execnode up` uses Ray's token auth (~/.ray/auth_token): join it
    with that token. Must run before Ray is imported (Ray reads its auth settings once)."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    token_file = Path.home() / ".ray" / "auth_token"
    if "RAY_AUTH_TOKEN" not in os.environ and token_file.exists():
        os.environ["RAY_AUTH_TOKEN"] = token_file.read_text().strip()


def deadline(seconds: float, what: str) -> threading.Timer:
    """Give up after `seconds`, whatever is blocking (a Ray call retrying a dead address): one line,
    exit status 2. The kill switch must never hang."""
    def fire() -> None:
        print("execnode: " + what + ": no answer from the node within %g s (is it running? "
              "`execnode status`; raise --timeout if it is only slow)" % seconds, file=sys.stderr, flush=True)
        os._exit(2)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    DEADLINES.append(timer)
    return timer


def node_address(cfg: NodeConfig) -> str:
    """The Ray address of the running node; NodeError (one line, at once) when it is not running."""
    if cfg.ray_address:
        return cfg.ray_address
    ep_file = Path(cfg.data_dir).resolve() / "endpoints.json"
    try:
        doc = json.loads(ep_file.read_text())
    except FileNotFoundError:
        raise NodeError("no running node " + repr(cfg.node_id) + " (no " + str(ep_file)
                        + "); start one with `execnode up`") from None
    except (OSError, ValueError) as exc:
        raise NodeError("cannot read " + str(ep_file) + ": " + str(exc)) from None
    pid = doc.get("pid")
    if isinstance(pid, int) and doc.get("host") == socket.gethostname() and not _alive(pid):
        raise NodeError("node " + repr(doc.get("node_id", cfg.node_id)) + " is not running (its process "
                        + str(pid) + " is gone; " + str(ep_file) + " is stale); start it with `execnode up`")
    address = doc.get("ray")
    if not address:
        raise NodeError(str(ep_file) + " names no Ray address")
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=2.0).close()
    except (OSError, ValueError):
        raise NodeError("node " + repr(cfg.node_id) + ": its Ray at " + address + " does not answer") from None
    return address


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def supervisor(cfg: NodeConfig) -> Any:
    """The running node's supervisor (a node started by `execnode up` on this machine or cluster)."""
    address = node_address(cfg)
    import ray

    try:
        ray.init(address=address, namespace=cfg.ray_namespace, log_to_driver=False, configure_logging=False)
        return ray.get_actor(cfg.node_id + ".supervisor", namespace=cfg.ray_namespace)
    except (ConnectionError, ValueError) as exc:
        raise NodeError("no running node " + repr(cfg.node_id) + " found (start one with `execnode up`): "
                        + str(exc).splitlines()[0]) from None


def http_health(api: str | None, timeout_s: float) -> dict | None:
    """The node's own /health (stores and ledger lag), or None when there is no API or it is silent."""
    if not api:
        return None
    import httpx

    try:
        return httpx.get(api + "/health", timeout=timeout_s).json()
    except (httpx.HTTPError, ValueError):
        return None
