"""Bringing a whole node up and down: embedded servers, Ray, the supervisor and its actors.

This is the CLI's wiring (the one place in `node/` that reaches into `actors/`, lazily). With no
URLs configured it starts an embedded Redis and PostgreSQL under `data_dir`; with REDIS_URL /
DATABASE_URL / RAY_ADDRESS it uses the real ones.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable

from node.config import NodeConfig
from node.errors import NodeError

Progress = Callable[[str], None]


def stderr_progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def quiet(msg: str) -> None:
    pass


class NodeRuntime:
    """`start()` -> endpoint registry; `stop()` undoes everything `start()` did, in reverse."""

    def __init__(self, cfg: NodeConfig, progress: Progress = stderr_progress, scratch: bool = False) -> None:
        """`scratch`: a node that leaves nothing behind (the demo; `node.scratch`): its ledger writes
        a database of its own, created at start and dropped at stop, and its Redis keys
        (`<node_id>.*`; give it its own node id and streams, `node.scratch.isolated`) go at stop."""
        self.cfg = cfg
        self._progress = progress
        self._scratch = scratch
        self._scratch_db: tuple[str, str] | None = None  # (server URL, database name) to drop at stop
        self._embedded: Any = None
        self._started_ray = False
        self.supervisor: Any = None
        self.registry: dict[str, str] = {}
        self.redis_url: str | None = None
        self.database_url: str | None = None
        self.redis_persistence: Any = None  # node.preflight.RedisPersistence, read at start
        self.degraded: list[str] = []  # why the node runs degraded (PostgreSQL down at start)
        self._notice_seq = 0
        self._supervisor_down = False

    def start(self) -> dict[str, str]:
        cfg = self.cfg
        t0 = time.perf_counter()
        self.redis_url, self.database_url = self._storage()
        self._check_storage()
        if self._scratch and self.database_url and self.degraded:
            self.database_url = None  # never the server's shared database once it is back: no ledger
            self._progress("PostgreSQL is down: this run has no ledger")
        elif self._scratch and self.database_url:
            from node import scratch

            server = self.database_url
            name, self.database_url = scratch.own_database(server)
            self._scratch_db = (server, name)
            self._progress("the ledger writes a database of its own: " + name + " (dropped at stop)")
        import ray

        from actors.ray_actors import ACTOR_OPTIONS, placement
        from actors.supervisor import Supervisor

        if not ray.is_initialized():
            self._progress("starting Ray" + (" (dashboard on)" if cfg.dashboard else ""))
            try:
                ray.init(
                    # no address: a Ray of its own, never a cluster found on the machine (another
                    # node's, a test's): "auto" or an address joins one on purpose
                    address=cfg.ray_address or "local",
                    namespace=cfg.ray_namespace,
                    include_dashboard=cfg.dashboard,
                    log_to_driver=False,
                    configure_logging=False,
                    runtime_env=_worker_env(cfg),
                )
            except Exception as exc:  # noqa: BLE001 - Ray raises plain Exception (a start-up timeout on a loaded host)
                first = (str(exc).splitlines() or [""])[0][:300]
                raise NodeError("Ray did not start: " + type(exc).__name__ + (": " + first if first else "")) from exc
            self._started_ray = True
        self._progress("starting actors: broker, engine, validator")
        self.supervisor = (
            ray.remote(Supervisor)
            .options(name=cfg.node_id + ".supervisor", namespace=cfg.ray_namespace,
                     **{**ACTOR_OPTIONS["supervisor"], **placement(cfg, "supervisor")})
            .remote(cfg, self.redis_url, self.database_url)
        )
        self.registry = ray.get(self.supervisor.start.remote(), timeout=120)
        self.registry["ray"] = ray.get_runtime_context().gcs_address
        self._progress("node up in %.1f s: intake %s" % (time.perf_counter() - t0, self.registry["intake"]))
        return dict(self.registry)

    def stats(self) -> dict[str, dict]:
        import ray

        return ray.get(self.supervisor.stats.remote(), timeout=30)

    def call(self, role: str, method: str, *args: Any) -> Any:
        import ray

        return ray.get(self.supervisor.call.remote(role, method, *args), timeout=30)

    def call_supervisor(self, method: str, *args: Any) -> Any:
        import ray

        return ray.get(getattr(self.supervisor, method).remote(*args), timeout=60)

    def stop(self) -> None:
        import ray

        if self.supervisor is not None:
            try:
                ray.get(self.supervisor.stop.remote(), timeout=60)
            except Exception:  # noqa: BLE001 - stopping: the kill below ends it anyway
                pass
            ray.kill(self.supervisor, no_restart=True)
            self.supervisor = None
            self._kill_detached()
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False
        if self._scratch:
            self._remove_scratch()
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded = None

    def _kill_detached(self, timeout_s: float = 10.0) -> None:
        """Every actor named after this node (the children are detached: they outlive the supervisor,
        so a supervisor that died or could not stop them leaves them to this), until none is listed."""
        import ray

        from actors.ray_actors import node_actor_names

        cfg = self.cfg
        deadline = time.monotonic() + timeout_s
        while names := node_actor_names(cfg.node_id, cfg.ray_namespace):
            for name in names:
                try:
                    ray.kill(ray.get_actor(name, namespace=cfg.ray_namespace), no_restart=True)
                except ValueError:  # gone meanwhile
                    pass
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)

    def watch(self, tell: Progress, poll_s: float = 1.0) -> str | None:
        """One poll for `execnode up`: the supervisor's new notices (an actor died, is back, was given
        up) go to `tell`; returns why the node cannot be brought back (its exit reason), else None."""
        import ray

        try:
            got = ray.get(self.supervisor.notices.remote(self._notice_seq), timeout=max(5.0, poll_s * 5))
        except (ray.exceptions.GetTimeoutError, ray.exceptions.ActorUnavailableError):  # Ray restarts it
            if not self._supervisor_down:
                self._supervisor_down = True
                tell("supervisor not answering (Ray is restarting it, or it is busy)")
            return None
        except ray.exceptions.RayActorError as exc:
            return "the supervisor is dead and Ray gave up restarting it (" + type(exc).__name__ + ")"
        if self._supervisor_down:
            self._supervisor_down = False
            tell("supervisor answering again")
        for seq, line in got["notices"]:
            self._notice_seq = max(self._notice_seq, seq)
            tell(line)
        health = got["health"]
        if not health.get("ok", True):
            return "gave up restarting " + ", ".join(health.get("gave_up", []))
        return None

    # ---------------------------------------------------------------- storage

    def _remove_scratch(self) -> None:
        """A scratch node's keys and database (after its actors are gone); a failure is one line."""
        from node import scratch

        try:
            if self.redis_url:
                scratch.delete_keys(self.redis_url, self.cfg.node_id)
            if self._scratch_db is not None:
                scratch.drop_own_database(*self._scratch_db)
                self._scratch_db = None
        except Exception as exc:  # noqa: BLE001 - stopping: say what was left, never a traceback
            self._progress("left behind (" + type(exc).__name__ + ": " + str(exc)[:200] + "): keys "
                           + self.cfg.node_id + ".* and database " + str(self._scratch_db and self._scratch_db[1]))

    def _storage(self) -> tuple[str, str | None]:
        st = self.cfg.storage
        redis_url, database_url = st.redis_url, st.database_url
        if redis_url and database_url:
            return redis_url, database_url
        from node.embedded import EmbeddedServices

        data_dir = os.path.abspath(self.cfg.data_dir)
        self._progress("starting embedded " + " and ".join(
            n for n, u in (("Redis", redis_url), ("PostgreSQL", database_url)) if not u
        ) + " under " + data_dir)
        self._embedded = EmbeddedServices(data_dir, redis_url=redis_url, database_url=database_url,
                                          redis_appendfsync=st.embedded_redis_appendfsync)
        return self._embedded.start()

    def _check_storage(self) -> None:
        """Redis must answer and persist (the signal path needs it: a refusal is one line, exit 2).
        PostgreSQL may be down: the signal path does not need it, so the node starts degraded and
        its ledger catches up when PostgreSQL returns (`degraded`, and the ledger's stats)."""
        import asyncio

        from node import preflight

        asyncio.run(preflight.check_redis(self.redis_url))
        self.redis_persistence = asyncio.run(preflight.redis_persistence(self.redis_url))
        preflight.require_persistent_redis(
            self.redis_url, self.redis_persistence, self.cfg.storage.allow_volatile_redis
        )
        self._progress("Redis " + preflight.mask_url(self.redis_url) + ": " + self.redis_persistence.describe())
        from node import stream_claim

        stream_claim.claim(self.redis_url, self.cfg.node_id, self.cfg.storage)  # another node's streams: refused
        if self.database_url:
            try:
                asyncio.run(preflight.check_postgres(self.database_url))
            except NodeError as exc:
                self.degraded.append(str(exc))
                self._progress(str(exc) + "; starting degraded: signals are taken and logged in Redis, "
                               "the ledger catches up when PostgreSQL returns")


def _worker_env(cfg: NodeConfig) -> dict[str, Any] | None:
    """What every Ray worker of the node gets, on any machine: the address to advertise for wildcard
    binds when one is configured (one machine behind NAT; a cluster leaves it empty, and each machine
    advertises its own address)."""
    if not cfg.advertise_host:
        return None
    return {"env_vars": {"NAE_ADVERTISE_HOST": cfg.advertise_host}}


def run_until_interrupted(runtime: NodeRuntime, tell: Progress = stderr_progress) -> str | None:
    """Until Ctrl-C or SIGTERM (docker stop, systemd), or until the node cannot be brought back; then
    a clean stop. Every second, the supervisor's notices (an actor died, is back) go to `tell`.
    Returns None after a requested stop, else the one-line reason the node could not go on. SIGINT is
    handled explicitly too: a node started in the background of a script would otherwise ignore it."""
    import signal
    import threading

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            why = runtime.watch(tell)
            if why is not None:
                return why
        return None
    finally:
        runtime.stop()


__all__ = ["NodeRuntime", "NodeError", "stderr_progress", "quiet", "run_until_interrupted"]
