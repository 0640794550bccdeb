"""Where Ray is applied, once: the actor options table and the one generic service actor.

Every data-plane actor is a `ServiceActor` hosting one plain service (see `actors.hosts`); the
per-signal path never goes through Ray: Ray starts, names, restarts and stops them.
"""

from __future__ import annotations

import os
from typing import Any, cast

import ray

from actors.hosts import build, prepare
from node import proctune
from node.config import NodeConfig, TuningConfig
from node.control import EngineControl
from node.stats import to_plain

#: name prefix -> Ray actor options. num_cpus=0: the data plane is I/O bound and must all fit on
#: one small machine; max_concurrency lets control calls run while the service loop thread works.
#: Every child of the supervisor is detached (it outlives a supervisor that dies and is found again by
#: name); `NodeRuntime.stop` kills them by name. The supervisor itself is restarted by Ray every time it
#: dies (its constructor then carries on from its checkpoint) within its own restart intensity, counted in
#: the checkpoint (`Supervisor._resume`: past it, it gives up and `execnode up` exits non-zero). A
#: lifetime count (10, until 2026-11-30) ended a 100-kill run at its 11th supervisor kill, nine minutes in.
SUPERVISOR_MAX_RESTARTS = -1
ACTOR_OPTIONS: dict[str, dict[str, Any]] = {
    "validator": {"num_cpus": 0, "max_concurrency": 4, "max_restarts": 0},
    # an engine killed -9 is restarted by Ray and comes back as a hot standby (see ServiceActor)
    "engine": {"num_cpus": 0, "max_concurrency": 4, "max_restarts": -1},
    "broker": {"num_cpus": 0, "max_concurrency": 4, "max_restarts": 0},
    "supervisor": {"num_cpus": 0, "max_concurrency": 8, "max_restarts": SUPERVISOR_MAX_RESTARTS},
    "ledger": {"num_cpus": 0},
    "reconciler": {"num_cpus": 0, "max_concurrency": 8},
    # the relay and the API hold no state: Ray restarts them in place, on the same ports
    "relay": {"num_cpus": 0, "max_concurrency": 2, "max_restarts": -1},
    "api": {"num_cpus": 0, "max_concurrency": 4, "max_restarts": -1},
}
DETACHED = "detached"


def this_process() -> tuple[str, int]:
    """(Ray node id, pid) of the calling actor: the supervisor judges a child dead when that pid is gone
    on its own machine (node.liveness)."""
    return ray.get_runtime_context().get_node_id(), os.getpid()


class ServiceActor:
    """Hosts one service built by `actors.hosts.build(kind, ...)`; its loop runs on its own thread."""

    def __init__(self, kind: str, *args: Any, later: bool = False, **kwargs: Any) -> None:
        """`later` (`spawn_later`): only the config-only part now (`actors.hosts.prepare`: the imports,
        a validator's compiled risk kernels), the service itself at `open`, which brings the addresses
        it needs: its process starts beside its peers' instead of after them."""
        restarted = ray.get_runtime_context().was_current_actor_reconstructed
        if restarted and kind == "engine":
            # Ray brought a dead engine back: whatever it was, it rejoins as a standby (the
            # supervisor promotes engines; a restarted process never leads on its own)
            kwargs["wiring"] = kwargs["wiring"].as_restarted()
        if kind != "engine" and args and isinstance(args[0], NodeConfig):  # an engine tunes itself by role
            proctune.apply(args[0].tuning, _role(kind, args))
        self._kind, self._args = kind, args
        if later:
            self._prepared: dict[str, Any] = prepare(kind, *args)
            return
        self._svc = build(kind, *args, **kwargs)
        if restarted:
            self._svc.start()

    def open(self, *args: Any, **kwargs: Any) -> dict[str, str]:
        """Build a service spawned `later` with the rest of its arguments, and start it."""
        self._svc = build(self._kind, *self._args, *args, **self._prepared, **kwargs)
        return self._svc.start()

    def start(self) -> dict[str, str]:
        return self._svc.start()

    def stop(self) -> None:
        self._svc.stop()

    def call(self, method: str, *args: Any) -> Any:
        out = getattr(self._svc, method)(*args)
        return to_plain(out) if method == "stats" else out  # a stats struct leaves as plain data

    # EngineControl (node.control), typed: what the supervisor calls on an engine
    def promote(self, epoch: int) -> dict:
        return self._engine().promote(epoch)

    def demote(self) -> None:
        return self._engine().demote()

    def resync(self) -> dict:
        return self._engine().resync()

    def switch_broker(self, endpoint: str, epoch: int, same_account: bool) -> dict:
        return self._engine().switch_broker(endpoint, epoch, same_account)

    def settle_stranded(self, endpoint: str) -> dict:
        return self._engine().settle_stranded(endpoint)

    def cancel_open(self, strategy_id: str | None = None) -> dict:
        return self._engine().cancel_open(strategy_id)

    def _engine(self) -> EngineControl:
        return cast(EngineControl, self._svc)

    def stats(self) -> dict:
        """The service's counters as plain data (a stats struct of `node.stats` leaves here)."""
        return to_plain(self._svc.stats())

    def pid(self) -> int:
        return os.getpid()

    def process(self) -> tuple[str, int]:
        return this_process()

    def alive(self) -> bool:
        return self._svc.alive()


#: how much of a machine's placement resource one actor takes (`ray start --resources='{"nae-a": 1}'`
#: offers room for a thousand): placement pins actors to machines, it does not count them
PLACEMENT_SHARE = 0.001


def placement(cfg: Any, role: str) -> dict[str, Any]:
    """Ray options that put `role` on the machine `cfg.placement` names ({} = anywhere)."""
    resource = cfg.placement_of(role) if isinstance(cfg, NodeConfig) else ""
    return {"resources": {resource: PLACEMENT_SHARE}} if resource else {}


def _role(kind: str, args: tuple) -> str:
    """validator, or engine:<name> / broker:<name> from the builder's (cfg, EngineConfig | BrokerConfig, ...)."""
    named = args[1] if len(args) > 1 else None
    return kind + ":" + named.name if kind in ("engine", "broker") and hasattr(named, "name") else kind


def spawn(kind: str, name: str, namespace: str, *args: Any, **kwargs: Any) -> "ray.actor.ActorHandle":
    opts = dict(ACTOR_OPTIONS[kind])
    opts.update(placement(args[0] if args else None, _role(kind, args)))
    return (
        ray.remote(ServiceActor)
        .options(name=name, namespace=namespace, lifetime=DETACHED, **opts)
        .remote(kind, *args, **kwargs)
    )


def spawn_later(kind: str, name: str, namespace: str, cfg: NodeConfig) -> "ray.actor.ActorHandle":
    """An actor of `kind` whose process starts now and prepares what needs only `cfg`; its service is
    built and started by `open(...)`. Only for a kind Ray never restarts (a replayed constructor would
    come back unopened): the supervisor itself replaces it (the validator)."""
    opts = dict(ACTOR_OPTIONS[kind])
    if opts.get("max_restarts", 0) != 0:
        raise ValueError(kind + ": Ray restarts it, so its constructor must take all of its arguments")
    opts.update(placement(cfg, _role(kind, (cfg,))))
    return (
        ray.remote(ServiceActor)
        .options(name=name, namespace=namespace, lifetime=DETACHED, **opts)
        .remote(kind, cfg, later=True)
    )


class LedgerActor:
    """Hosts the PostgreSQL ledger (an asyncio service) in an async Ray actor."""

    def __init__(self, storage_cfg: Any, redis_url: str, database_url: str, tuning: TuningConfig | None = None,
                 node_id: str = "") -> None:
        from actors.ledger import Ledger, LedgerConfig

        proctune.apply(tuning or TuningConfig(), "ledger")  # the drain yields the CPU to the intake

        # a read takes up to 128 entries; each is one wake-up's batch (1 to ~1,000 items)
        self._ledger = Ledger(storage_cfg, redis_url, database_url, LedgerConfig(batch_count=128, node_id=node_id))
        self._task: Any = None

    async def start(self) -> dict[str, str]:
        import asyncio

        if self._task is None:
            try:
                await self._ledger.start()  # migrations, consumer groups
            except Exception as exc:  # noqa: BLE001 - PostgreSQL down: run() retries start() with backoff
                self._ledger.note_start_failure(exc)  # (the node runs degraded; stats say why)
            self._task = asyncio.get_running_loop().create_task(self._ledger.run())
        return {}

    async def stats(self) -> dict:
        return to_plain(self._ledger.stats())  # a stats struct leaves as plain data

    async def alive(self) -> bool:
        """The drain task runs (the supervisor restarts a ledger that says no, or is dead)."""
        return self._task is not None and not self._task.done()

    async def drain(self) -> int:
        return await self._ledger.drain()

    async def stop(self) -> None:
        if self._task is not None:
            await self._ledger.stop()
            await self._task
            self._task = None

    def pid(self) -> int:
        return os.getpid()

    def process(self) -> tuple[str, int]:
        return this_process()


def spawn_ledger(name: str, namespace: str, *args: Any, **kwargs: Any) -> "ray.actor.ActorHandle":
    return (ray.remote(LedgerActor).options(name=name, namespace=namespace, lifetime=DETACHED, **ACTOR_OPTIONS["ledger"])
            .remote(*args, **kwargs))


class ReconcilerActor:
    """Hosts the reconciler (an asyncio service, `actors.reconciler`) in an async Ray actor. It asks
    the supervisor (found by name) for the brokers' books and applies trading states through the
    supervisor's validator: both are control-plane calls, never on the per-signal path."""

    def __init__(self, cfg: Any, redis_url: str, database_url: str, supervisor_name: str,
                 publish_endpoint: str | None) -> None:
        from actors.reconciler import Reconciler

        proctune.apply(cfg.tuning, "reconciler")
        self._sup_name = supervisor_name
        self._namespace = cfg.ray_namespace
        self._rec = Reconciler(cfg, redis_url, database_url, self._broker_books, self._control, publish_endpoint,
                               links=self._broker_links, lift=self._lift)
        self._task: Any = None

    def _supervisor(self) -> Any:
        return ray.get_actor(self._sup_name, namespace=self._namespace)

    async def _broker_books(self) -> list:
        return await self._supervisor().broker_books.remote()

    async def _broker_links(self) -> dict:
        return await self._supervisor().broker_links.remote()

    async def _control(self, state: str, strategy_id: str | None, by: str) -> None:
        await self._supervisor().call.remote("validator", "set_state", state, strategy_id, by)

    async def _lift(self, by: str) -> dict:
        return await self._supervisor().call.remote("validator", "lift_states", by)

    async def start(self) -> dict[str, str]:
        import asyncio

        await self._rec.start()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._rec.run())
        return {}

    async def reconcile(self, trigger: str = "manual", act: bool = True) -> Any:
        return await self._rec.reconcile(trigger, act)

    async def stats(self) -> dict:
        return to_plain(self._rec.stats())  # a stats struct leaves as plain data

    async def alive(self) -> bool:
        return True

    async def stop(self) -> None:
        await self._rec.stop()
        if self._task is not None:
            await self._task
            self._task = None

    def pid(self) -> int:
        return os.getpid()

    def process(self) -> tuple[str, int]:
        return this_process()


def spawn_reconciler(name: str, namespace: str, *args: Any) -> "ray.actor.ActorHandle":
    return (ray.remote(ReconcilerActor)
            .options(name=name, namespace=namespace, lifetime=DETACHED, **ACTOR_OPTIONS["reconciler"])
            .remote(*args))


class RelayActor:
    """The events relay (`actors.events_relay`) in a process of its own: execution reports keep flowing
    while the supervisor restarts. Binds fixed ports, so Ray's restart brings it back where peers look."""

    def __init__(self, bind_host: str, events_port: int, publish_port: int) -> None:
        from actors.events_relay import EventsRelay

        self._relay = EventsRelay(bind_host, events_port, publish_port)
        self._endpoints = self._relay.start()

    def endpoints(self) -> dict[str, str]:
        return dict(self._endpoints)

    def alive(self) -> bool:
        return self._relay.alive()

    def stats(self) -> dict:
        return {"alive": self._relay.alive()}

    def stop(self) -> None:
        self._relay.stop()

    def pid(self) -> int:
        return os.getpid()

    def process(self) -> tuple[str, int]:
        return this_process()


class ApiActor:
    """The operator HTTP API (`actors.api`) in a process of its own, so an HTTP flood never shares a
    process (a GIL, a thread pool) with the supervisor's heartbeats. Its stats and admin actions are
    Ray calls to the supervisor, found by name on every call (it may have been restarted); while the
    supervisor does not answer, /health says so (503, supervisor down)."""

    def __init__(self, cfg: Any, supervisor_name: str, intake: str, port: int, redis_url: str,
                 database_url: str | None, ledger: bool) -> None:
        from actors.api import ApiServer, build_app
        from node.health import StoreProbe

        self._sup_name = supervisor_name
        self._namespace = cfg.ray_namespace
        st = cfg.storage
        probe = StoreProbe(redis_url, database_url, cfg.node_id + ".readyz",
                           [st.signals_stream, st.events_stream], "ledger" if ledger else None)
        app = build_app(cfg.api, self._stats, self._admin, intake, cfg.intake.max_frame_bytes, probe=probe)
        self._server = ApiServer(app, cfg.api.host, port, cfg.api)
        self._address = self._server.start()

    def _supervisor(self) -> Any:
        return ray.get_actor(self._sup_name, namespace=self._namespace)

    def _stats(self, timeout_s: float) -> dict:
        return ray.get(self._supervisor().stats.remote(timeout_s), timeout=timeout_s * 2 + 1)

    def _admin(self, action: str, body: dict) -> Any:
        return ray.get(self._supervisor().admin.remote(action, body), timeout=180)

    def address(self) -> str:
        return self._address

    def alive(self) -> bool:
        return True

    def stats(self) -> dict:
        return {"address": self._address}

    def stop(self) -> None:
        self._server.stop()

    def pid(self) -> int:
        return os.getpid()

    def process(self) -> tuple[str, int]:
        return this_process()


def spawn_plain(cls: type, kind: str, name: str, namespace: str, cfg: Any, *args: Any) -> "ray.actor.ActorHandle":
    """A detached actor of class `cls` with `kind`'s options (the relay, the API), on the supervisor's
    machine (`placement` of `supervisor`: their addresses are the node's front door)."""
    opts = {**ACTOR_OPTIONS[kind], **placement(cfg, "supervisor")}
    return ray.remote(cls).options(name=name, namespace=namespace, lifetime=DETACHED, **opts).remote(*args)


def node_actor_names(node_id: str, namespace: str) -> list[str]:
    """The names of every live named actor of node `node_id` in `namespace` (its supervisor and children)."""
    from ray.util import list_named_actors

    prefix = node_id + "."
    return sorted(a["name"] for a in list_named_actors(all_namespaces=True)
                  if a.get("namespace") == namespace and a["name"].startswith(prefix))
