"""The supervisor: starts the actors, holds the endpoint registry, detects a dead engine by its
heartbeats and fails over to a hot standby with a new epoch, restarts a dead validator or broker
adapter on its old address, serves the operator HTTP API, stops everything cleanly.

Contract:
- `start()` is idempotent: a second call returns the registry it already has.
- Start order: the events relay (in this process: one stable address for execution reports),
  the heartbeat socket, the ledger (when a database is configured), the broker, the engines in
  priority order (the first is the leader with epoch 1, the others hot standbys), the validator
  (forwards every batch to every engine), the HTTP API. Stop runs in reverse.
- The registry maps role -> endpoint. `intake` and `events` never change while the supervisor
  lives (the intake keeps its port across validator restarts; the relay outlives engines; an
  engine restarted by Ray comes back on its old port as a standby).
- State it keeps: the epoch it last granted, the leader's name, the failover log. Calls that
  change state (`failover`, `failback`, `restart`) run one at a time under a lock.
- Failure detection never waits for Ray: engines heartbeat over ZeroMQ every
  `heartbeat_interval_ms`; a leader silent for `heartbeat_misses` intervals is failed over at once
  (epoch + 1, the freshest standby by priority is promoted: it asks the broker, re-drives in-flight
  orders with the same ids). Ray restarts the dead process in the background and it rejoins as a
  standby. Ray's death notice is a second detector for the leader. The validator's and the broker
  adapter's liveness is polled over Ray (control plane only); a restarted adapter is followed by
  the leader's `resync` (ask the venue, re-drive what it lacks).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import msgspec
import ray
import zmq

from actors.events_relay import EventsRelay
from actors.ray_actors import spawn, spawn_ledger
from actors.service import bind_random
from actors.wiring import EngineWiring
from node.config import NodeConfig
from node.messages import heartbeat_decoder


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Supervisor:
    def __init__(
        self,
        cfg: NodeConfig,
        redis_url: str,
        database_url: str | None = None,
        watch: bool = True,
        watch_interval_ms: int = 250,
    ) -> None:
        self._cfg = cfg
        self._redis_url = redis_url
        self._database_url = database_url
        self._actors: dict[str, Any] = {}  # "broker", "validator", "engine:<name>"
        self._engine_ports: dict[str, int] = {}
        self._registry: dict[str, str] = {}
        self._relay = EventsRelay(cfg.bind_host)
        self._lock = threading.RLock()
        self._watch = watch
        self._watch_s = watch_interval_ms / 1000
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._hb_interval_ns = cfg.heartbeat_interval_ms * 1_000_000
        self._hb_dead_ns = cfg.heartbeat_misses * self._hb_interval_ns
        self._last_hb: dict[str, tuple[int, str, int]] = {}  # engine -> (seen ns, role, epoch)
        self._leader_seen_ns = 0
        self.epoch = 1
        self.leader = cfg.engines[0].name
        self.restarts: list[dict] = []
        self.failovers: list[dict] = []
        self._api: Any = None

    # ---------------------------------------------------------------- start / stop

    def start(self) -> dict[str, str]:
        with self._lock:
            if self._registry:
                return dict(self._registry)
            cfg = self._cfg
            relay = self._relay.start()
            hb = zmq.Context.instance().socket(zmq.PULL)
            hb.setsockopt(zmq.LINGER, 0)
            self._registry = {"events": relay["events"], "publish": relay["publish"],
                              "heartbeat": bind_random(hb, cfg.bind_host)}
            if self._database_url and cfg.storage.ledger:
                ledger = spawn_ledger(self._name("ledger"), cfg.ray_namespace, cfg.storage, self._redis_url,
                                      self._database_url)
                self._actors["ledger"] = ledger
                ray.get(ledger.start.remote(), timeout=120)
            self._start_broker()
            for i, engine in enumerate(cfg.engines):
                self._start_engine(engine.name, role="leader" if i == 0 else "standby")
            self._leader_seen_ns = time.time_ns()
            self._start_validator()
            if cfg.api.enabled:
                self._start_api()
            self._spawn_thread(self._heartbeat_loop, "heartbeats", hb)
            if self._watch:
                self._spawn_thread(self._watch_loop, "watch")
            return dict(self._registry)

    def stop(self) -> None:
        self._stopping.set()
        if self._api is not None:
            self._api.stop()
            self._api = None
        with self._lock:
            roles = ["validator"] + ["engine:" + e.name for e in self._cfg.engines] + ["broker", "ledger"]
            for role in roles:
                actor = self._actors.pop(role, None)
                if actor is None:
                    continue
                try:
                    ray.get(actor.stop.remote(), timeout=10)
                except Exception:  # noqa: BLE001 - stopping: the kill below ends it anyway
                    pass
                ray.kill(actor, no_restart=True)
            for t in self._threads:
                t.join(2)
            self._relay.stop()
            self._registry = {}

    # ---------------------------------------------------------------- queries

    def registry(self) -> dict[str, str]:
        return dict(self._registry)

    def stats(self, timeout_s: float = 10.0) -> dict[str, Any]:
        """Every actor's counters; one deadline for all, a silent actor is reported `down`. Takes no
        lock (one atomic copy of the table), so a failover in progress never holds up /health."""
        refs = {role: a.stats.remote() for role, a in dict(self._actors).items()}
        deadline = time.monotonic() + timeout_s
        out: dict[str, Any] = {}
        for role, ref in refs.items():
            try:
                out[role] = ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))
            except Exception as exc:  # noqa: BLE001 - a dead actor is reported, not raised
                out[role] = {"down": type(exc).__name__}
        out["engine"] = out.get("engine:" + self.leader, {})
        out["supervisor"] = {"epoch": self.epoch, "leader": self.leader, "restarts": list(self.restarts),
                             "failovers": list(self.failovers)}
        return out

    def call(self, role: str, method: str, *args: Any) -> Any:
        return ray.get(self._actor(role).call.remote(method, *args), timeout=30)

    def pid(self, role: str) -> int:
        return ray.get(self._actor(role).pid.remote(), timeout=10)

    def _actor(self, role: str) -> Any:
        if role == "engine":
            role = "engine:" + self.leader
        return self._actors[role]

    # ---------------------------------------------------------------- failover

    def failover(self, to: str | None = None, reason: str = "manual", detected_ns: int = 0) -> dict:
        """Make `to` (default: the freshest standby by priority) the leader with a new epoch."""
        with self._lock:
            t0 = time.time_ns()
            old = self.leader
            target = to or self._best_standby(exclude=old)
            if target is None:
                raise RuntimeError("no live standby engine to fail over to")
            if target == old and to is not None:
                return {"from": old, "to": old, "epoch": self.epoch, "changed": False}
            if old != target:
                # a live old leader steps down now (a slow one, wrongly thought dead, would step
                # down anyway at its first fenced send); a dead one is fenced by the epoch
                ref = self._actors["engine:" + old].call.remote("demote")
                if reason == "manual":
                    try:
                        ray.get(ref, timeout=10)
                    except Exception:  # noqa: BLE001 - fenced by the epoch all the same
                        pass
            self.epoch += 1
            promoted = ray.get(self._actors["engine:" + target].call.remote("promote", self.epoch), timeout=120)
            self.leader = target
            self._leader_seen_ns = time.time_ns()
            event = {"from": old, "to": target, "epoch": self.epoch, "reason": reason,
                     "detected_ns": detected_ns, "started_ns": t0, "promoted_ns": time.time_ns(),
                     "promote_us": promoted.get("took_us"), "redriven": promoted.get("redriven")}
            self.failovers.append(event)
            self._record("failover", event)
            return event

    def failback(self) -> dict:
        """Back to the engine of highest priority (the first configured)."""
        return self.failover(to=self._cfg.engines[0].name, reason="manual")

    def _best_standby(self, exclude: str) -> str | None:
        now = time.time_ns()
        for engine in self._cfg.engines:
            seen = self._last_hb.get(engine.name)
            if seen is None or now - seen[0] > self._hb_dead_ns:
                continue
            if engine.name == exclude and seen[1] != "standby":
                continue  # the failed leader itself, unless Ray already brought it back as a standby
            return engine.name
        return None

    def _heartbeat_loop(self, hb: zmq.Socket) -> None:
        poll_ms = max(1, self._cfg.heartbeat_interval_ms // 4)
        try:
            while not self._stopping.is_set():
                if hb.poll(poll_ms):
                    while True:
                        try:
                            beat = heartbeat_decoder.decode(hb.recv(zmq.NOBLOCK))
                        except zmq.Again:
                            break
                        now = time.time_ns()
                        self._last_hb[beat.sender] = (now, beat.role, beat.epoch)
                        if beat.sender == self.leader and beat.role == "leader" and beat.epoch == self.epoch:
                            self._leader_seen_ns = now
                now = time.time_ns()
                if now - self._leader_seen_ns > self._hb_dead_ns and not self._stopping.is_set():
                    self._fail_over_dead_leader(now)
        finally:
            hb.close(0)

    def _fail_over_dead_leader(self, detected_ns: int) -> None:
        try:
            self.failover(reason="heartbeat", detected_ns=detected_ns)
        except Exception:  # noqa: BLE001 - no standby yet: try again on the next beat
            self._leader_seen_ns = detected_ns - self._hb_dead_ns + self._hb_interval_ns

    # ---------------------------------------------------------------- validator restarts

    def restart(self, role: str = "validator", reason: str = "manual") -> dict[str, str]:
        """Replace the validator with a fresh one on the same port; returns the registry."""
        if role != "validator":
            raise ValueError("engines fail over (failover/failback); only the validator restarts")
        t0 = time.perf_counter()
        with self._lock:
            old = self._actors.pop("validator", None)
            if old is not None:
                ray.kill(old, no_restart=True)
            self._start_validator()
            resync = self._resync_leader()
            self.restarts.append({"role": role, "reason": reason, "resync": resync,
                                  "took_ms": round((time.perf_counter() - t0) * 1e3, 1)})
            self._record("restart", self.restarts[-1])
            return dict(self._registry)

    def _resync_leader(self) -> dict:
        """A validator that died may have logged and acknowledged batches it never forwarded: the
        leader reads the signal log after its checkpoint and sends what the broker lacks."""
        try:
            return self.call("engine:" + self.leader, "resync")
        except Exception as exc:  # noqa: BLE001 - recorded; the next failover replays anyway
            return {"error": type(exc).__name__ + ": " + str(exc).splitlines()[0][:200]}

    def stop_role(self, role: str) -> None:
        """Stop the validator and leave it down (the watch ignores it) until `start_role`."""
        with self._lock:
            actor = self._actors.pop(role, None)
            if actor is not None:
                _kill_and_wait(actor)

    def start_role(self, role: str) -> dict[str, str]:
        with self._lock:
            if role not in self._actors and role == "validator":
                self._start_validator()
                self._resync_leader()
            return dict(self._registry)

    # ---------------------------------------------------------------- spawning

    def _start_broker(self) -> None:
        cfg = self._cfg
        self._broker_port = getattr(self, "_broker_port", 0) or _free_port(cfg.bind_host)
        broker = spawn("broker", self._name("broker:" + cfg.broker.name + "@" + str(time.time_ns())),
                       cfg.ray_namespace, cfg, None, self._broker_port)
        self._actors["broker"] = broker
        self._registry["broker"] = ray.get(broker.start.remote(), timeout=60)["orders"]

    def restart_broker(self, reason: str = "manual") -> dict:
        """A new broker adapter on the same address (engines reconnect by themselves); then the
        leader asks it what the venue has and re-drives the rest."""
        t0 = time.perf_counter()
        with self._lock:
            old = self._actors.pop("broker", None)
            if old is not None:
                ray.kill(old, no_restart=True)
            self._start_broker()
            try:
                resync = self.call("engine:" + self.leader, "resync")
            except Exception as exc:  # noqa: BLE001 - recorded; the leader's next failover re-drives
                resync = {"error": type(exc).__name__ + ": " + str(exc).splitlines()[0][:200]}
            event = {"role": "broker", "reason": reason, "resync": resync,
                     "took_ms": round((time.perf_counter() - t0) * 1e3, 1)}
            self.restarts.append(event)
            self._record("restart", event)
            return event

    def _start_engine(self, name: str, role: str) -> None:
        cfg = self._cfg
        engine = next(e for e in cfg.engines if e.name == name)
        port = self._engine_ports.setdefault(name, _free_port(cfg.bind_host))
        actor = spawn(
            "engine",
            self._name("engine:" + name),
            cfg.ray_namespace,
            cfg,
            engine,
            wiring=EngineWiring(
                redis_url=self._redis_url,
                broker_endpoint=self._registry["broker"],
                publish_endpoint=self._registry["publish"],
                epoch=self.epoch,
                recover=role == "leader",
                role=role,
                heartbeat_endpoint=self._registry["heartbeat"],
                follow_endpoint=self._registry["events"],
                port=port,
            ),
        )
        self._actors["engine:" + name] = actor
        intake = ray.get(actor.start.remote(), timeout=60)["intake"]
        self._registry["engine:" + name] = intake
        if role == "leader":
            self._registry["engine"] = intake

    def _engine_intakes(self) -> list[str]:
        return [self._registry["engine:" + e.name] for e in self._cfg.engines]

    def _start_validator(self) -> None:
        cfg = self._cfg
        if "intake" in self._registry and cfg.intake.port == 0:
            port = int(self._registry["intake"].rsplit(":", 1)[1])  # keep the address clients use
            cfg = msgspec.structs.replace(cfg, intake=msgspec.structs.replace(cfg.intake, port=port))
        validator = spawn(
            "validator", self._name("validator@" + str(time.time_ns())), cfg.ray_namespace, cfg,
            self._redis_url, self._engine_intakes(), self._registry["events"],
        )
        self._actors["validator"] = validator
        self._registry["intake"] = ray.get(validator.start.remote(), timeout=60)["intake"]

    def _start_api(self) -> None:
        from actors.api import ApiServer, build_app

        cfg = self._cfg
        app = build_app(cfg.api, self.stats, self._admin, self._registry["intake"], cfg.intake.max_frame_bytes)
        self._api = ApiServer(app, cfg.api.host, cfg.api.port)
        self._registry["api"] = self._api.start()

    def _admin(self, action: str, body: dict) -> Any:
        """The HTTP admin actions (see actors/api.py); KeyError / ValueError are the caller's mistakes."""
        strategy = body.get("strategy_id")
        if action in ("kill", "unkill"):
            return self.call("validator", action, strategy)
        if action in ("pause", "resume"):
            return self.call("validator", action, body["strategy_id"])
        if action == "state":
            return self.call("validator", "set_state", body["state"], strategy)
        if action == "reset-breaker":
            return self.call("validator", "reset_breaker", body["name"])
        if action == "failover":
            return self.failover(body.get("to"), reason="manual")
        if action == "failback":
            return self.failback()
        raise ValueError("unknown admin action " + repr(action))

    def _spawn_thread(self, target: Any, name: str, *args: Any) -> None:
        t = threading.Thread(target=target, name="supervisor-" + name, args=args, daemon=True)
        t.start()
        self._threads.append(t)

    def _name(self, role: str) -> str:
        return self._cfg.node_id + "." + role

    def _record(self, kind: str, event: dict) -> None:
        """Failovers and restarts go to the monitoring stream (best effort: never blocks a failover)."""
        try:
            import orjson
            import redis

            client = redis.Redis.from_url(self._redis_url, socket_timeout=1, socket_connect_timeout=1)
            client.xadd(self._cfg.storage.monitoring_stream, {b"m": orjson.dumps({"kind": kind, **event})},
                        maxlen=100_000, approximate=True)
            client.close()
        except Exception:  # noqa: BLE001 - monitoring must not stop the node
            pass

    def _check_leader_with_ray(self) -> None:
        """Ray's death notice, the second detector: a leader whose actor Ray reports dead (or
        restarting) is failed over even if a stray heartbeat was still in flight."""
        leader = self.leader
        actor = self._actors.get("engine:" + leader)
        if actor is None:
            return
        try:
            ray.get(actor.alive.remote(), timeout=2)
        except Exception:  # noqa: BLE001 - dead or restarting
            if self.leader == leader and not self._stopping.is_set():
                try:
                    self.failover(reason="ray", detected_ns=time.time_ns())
                except Exception:  # noqa: BLE001 - no standby yet: the heartbeat path retries
                    pass

    def _watch_loop(self) -> None:
        """The validator and the broker adapter: polled over Ray, restarted on the same address."""
        restart = {"validator": lambda: self.restart("validator", reason="died"),
                   "broker": lambda: self.restart_broker(reason="died")}
        while not self._stopping.wait(self._watch_s):
            self._check_leader_with_ray()
            for role, again in restart.items():
                actor = self._actors.get(role)
                if actor is None:
                    continue
                try:
                    ray.get(actor.alive.remote(), timeout=2)
                except Exception:  # noqa: BLE001 - any failure to answer is a death to act on
                    if self._stopping.is_set():
                        return
                    try:
                        again()
                    except Exception:  # noqa: BLE001 - try again next round
                        pass


def _kill_and_wait(actor: Any, timeout_s: float = 10.0) -> None:
    """ray.kill returns at once and the process may still answer for a moment: wait until the
    actor's process is gone (same host), or at least until Ray reports the actor dead."""
    import os

    try:
        pid = ray.get(actor.pid.remote(), timeout=2)
    except Exception:  # noqa: BLE001 - already dead
        return
    ray.kill(actor, no_restart=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            break
        time.sleep(0.02)
    while time.monotonic() < deadline:
        try:
            ray.get(actor.pid.remote(), timeout=1)
        except Exception:  # noqa: BLE001 - dead is what we wait for
            return
        time.sleep(0.05)
