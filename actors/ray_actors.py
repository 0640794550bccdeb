"""Where Ray is applied, once: the actor options table and the one generic service actor.

Every data-plane actor is a `ServiceActor` hosting one plain service (see `actors.hosts`); the
per-signal path never goes through Ray: Ray starts, names, restarts and stops them.
"""

from __future__ import annotations

import os
from typing import Any

import ray

from actors.hosts import build

#: name prefix -> Ray actor options. num_cpus=0: the data plane is I/O bound and must all fit on
#: one small machine; max_concurrency lets control calls run while the service loop thread works.
ACTOR_OPTIONS: dict[str, dict[str, Any]] = {
    "validator": {"num_cpus": 0, "max_concurrency": 4, "max_restarts": 0},
    "engine": {"num_cpus": 0, "max_concurrency": 4, "max_restarts": 0},
    "broker": {"num_cpus": 0, "max_concurrency": 4, "max_restarts": 0},
    "supervisor": {"num_cpus": 0, "max_concurrency": 8},
}


class ServiceActor:
    """Hosts one service built by `actors.hosts.build(kind, ...)`; its loop runs on its own thread."""

    def __init__(self, kind: str, *args: Any, **kwargs: Any) -> None:
        self._svc = build(kind, *args, **kwargs)

    def start(self) -> dict[str, str]:
        return self._svc.start()

    def stop(self) -> None:
        self._svc.stop()

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self._svc, method)(*args)

    def stats(self) -> dict:
        return self._svc.stats()

    def pid(self) -> int:
        return os.getpid()

    def alive(self) -> bool:
        return self._svc.alive()


def spawn(kind: str, name: str, namespace: str, *args: Any, **kwargs: Any) -> "ray.actor.ActorHandle":
    opts = dict(ACTOR_OPTIONS[kind])
    return (
        ray.remote(ServiceActor)
        .options(name=name, namespace=namespace, lifetime=None, **opts)
        .remote(kind, *args, **kwargs)
    )
