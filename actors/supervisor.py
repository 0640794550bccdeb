"""The supervisor: starts the actors, holds the endpoint registry, detects a dead engine by its
heartbeats and fails over to a hot standby with a new epoch, moves an engine group to its next
broker when its broker adapter dies, restarts a dead validator, broker adapter, ledger or reconciler,
stops everything cleanly. It can die: Ray restarts it (`max_restarts`, actors.ray_actors) and it
carries on from its checkpoint.

Contract:
- `start()` is idempotent: a second call returns the registry it already has.
- Start order: the events relay (an actor of its own: one stable address for execution reports),
  the heartbeat socket (in this process), the ledger (when a database is configured), the brokers,
  each engine group's engines in priority order (the first is the group's leader with epoch 1, the
  others hot standbys), the reconciler, the validator (forwards every batch to every engine; each
  engine keeps its group's signals, see node.router), the HTTP API (an actor of its own that calls
  this supervisor by name: an HTTP flood never shares this process with the heartbeats). Stop runs
  in reverse and then kills whatever actor still bears the node's name.
- Children are detached (Ray's `lifetime="detached"`) and named `<node_id>.<role>` (validator, broker,
  ledger and reconciler names carry a `@<ns>` suffix: a replacement never waits for a dead one's name).
  They outlive this supervisor.
- What it checkpoints (`<node_id>.supervisor.checkpoint`, node.supervisor_checkpoint), on every change
  (an epoch grant, a promotion, a broker move, a child spawned or replaced): the lane table (per group:
  epoch, leader, active broker), role -> child name, the registry, the engines' and brokers' ports.
  Written to Redis by `actors.recorder.Recorder` off the decision path (a frozen Redis never holds a
  failover up), as are every epoch grant, failover, move, restart and error (the monitoring stream).
- How a restarted supervisor finds its children (`_resume`, run by its constructor when Ray
  reconstructed it): it reads the checkpoint, `ray.get_actor(name)` for each child, restores the lane
  table (`FailoverPolicy.restore`), asks each engine its role and epoch at once, one deadline for all
  (`FailoverPolicy.adopt`: the engines' word wins over a lagging checkpoint, and the epoch is bumped by
  one past anything seen, for a grant that may have been on its way when it died), promotes the best
  standby of every group whose leader's process is gone or answers as a standby right then
  (node.liveness.resume_verdict: a leader killed while the supervisor was down is failed over as soon as
  it is back, `resumed["promoted"]` says how long after its restart), kills actors under the node's prefix the
  checkpoint does not list (orphans), starts again any role with no live actor, binds the heartbeat
  socket at its old address (engines reconnect by themselves) and runs its loops again. Without a
  checkpoint it kills every child and starts afresh. The data plane never waits for it: signals are
  taken, executed and reported while it is down; only failovers and restarts wait.
- The registry maps role -> endpoint. `intake`, `events` and `api` never change while the node lives
  (the intake keeps its port across validator restarts; the relay and the API are restarted by Ray on
  their fixed ports; an engine restarted by Ray comes back on its old port as a standby).
- Idempotent calls: `start()`; `failover(to=X)` when X already leads (answers `changed: false`);
  `restart(dead=handle)` acts only if that handle is still the current validator, `_broker_died`,
  `_restart_service` (ledger, reconciler) only if the actor they saw die is still the current one;
  each engine control call carries the epoch it acts under (node.control.EngineControl), so a repeat
  after an ambiguous Ray error (or a supervisor that died mid-call and was restarted) is harmless.
  Calls that change the lane table (`failover`, `failback`, `broker_failover`) run one at a time
  under one lock, restarts (`restart`, `restart_broker`, the ledger's, the reconciler's) under another,
  taken first when both are: a leader failover never waits for a restart (a broker adapter's took 24 s
  under load, and leader kills meanwhile waited that long to be failed over).
- Liveness (node.liveness): the validator, the ledger and the reconciler are judged dead on evidence
  only: Ray's death notice, their own "not alive", or their process gone (the supervisor learns each
  child's node and pid when it starts, and the leader's at each promotion; `os.kill(pid, 0)` on this
  machine). A late `alive()` answer is only slow and never restarts one; silent 30 s with its process
  still there, it is hung and restarted (recorded `hung`).
- Restarts: a dead validator, broker adapter, ledger or reconciler is restarted within a restart
  intensity (node.failover.RestartBudget); past it the role is given up and `health()` says so
  (`execnode up` then exits non-zero). Engines, the relay and the API are restarted by Ray
  (`max_restarts=-1`); engines rejoin as standbys. Each death and return is a line in `notices()`
  (`execnode up` prints them).
- Failure detection never waits for Ray: engines heartbeat over ZeroMQ every
  `heartbeat_interval_ms`; a leader silent for `heartbeat_misses` intervals is failed over at once
  (epoch + 1, the freshest standby by priority is promoted: it asks the broker, re-drives in-flight
  orders with the same ids). Ray restarts the dead process in the background and it rejoins as a
  standby. Ray's death notice is a second detector for the leader. The validator's liveness is
  polled over Ray (control plane only).
- Broker adapters are pinged over ZeroMQ (Heartbeat -> Heartbeat) and polled over Ray; one silent
  for `broker_dead_ms` is dead. Every group using it moves to its next live broker (epoch + 1; the
  group's engines `switch_broker`: the leader asks the new broker and re-drives, stranding first what
  the lost one never answered when the new one keeps another account), and the dead adapter is
  restarted on its old address as a standby broker. A group with no other broker gets the adapter
  back on the same address and its leader's `resync` (ask the venue, re-drive what it lacks).
"""

from __future__ import annotations

import secrets
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, NamedTuple

import msgspec
import ray
import zmq

from actors.ray_actors import (ApiActor, RelayActor, node_actor_names, spawn, spawn_later, spawn_ledger,
                               spawn_plain, spawn_reconciler)
from actors.recorder import Recorder, read_checkpoint
from actors.service import advertised, bind_at, is_wildcard
from actors.wiring import EngineWiring
from node.config import NodeConfig
from node.control import EngineKind, Role
from node.exit_watch import ExitWatch
from node.failover import Detector, FailoverPolicy, GrantKind, Lane, RestartBudget
from node.liveness import Answer, LivenessPolicy, Process, ResumeVerdict, Verdict, resume_verdict
from node.logs import configure as configure_logging, lifecycle, logger
from node.messages import Heartbeat, encode, heartbeat_decoder
from node.pids import pid_alive
from node.ports import free_port
from node.errors import BrokerError
from node.reasons import Reason
from node.reconcile_halts import FAILED_BY, by_of, lifts_failed_halt
from node.stats import SupervisorStats, to_plain
from node.supervisor_checkpoint import SupervisorCheckpoint, checkpoint_key, decode as decode_checkpoint, orphans

__all__ = ["Lane", "Supervisor"]

#: how long, and how often, the leader of a group moved off a lost broker asks it again about the
#: orders it does not know yet (it settles them within its own `unknown_settle_ms`, 30 s by default)
_SETTLE_FOR_S = 120.0
_SETTLE_EVERY_S = 1.0
#: a leader's resync after a broker restart that failed is asked again this often, for this long
_RESYNC_EVERY_S = 2.0
_RESYNC_FOR_S = 120.0
#: the reasons of a restart the watch made (node.liveness: DEAD, HUNG), against an operator's
_UNASKED = ("died", "hung")
SUPERVISOR = "supervisor"  # its own role in the restart intensity (`RestartBudget`), kept in the checkpoint


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
        self._log = logger("supervisor")
        configure_logging(cfg)
        self._redis_url = redis_url
        self._database_url = database_url
        self._actors: dict[str, Any] = {}  # "validator", "engine:<name>", "broker:<name>", "ledger"
        self._engine_ports: dict[str, int] = {}
        self._broker_ports: dict[str, int] = {}
        self._brokers = {b.name: b for b in cfg.broker_list()}
        self.lanes = {g.name: Lane.of(g, cfg.group_brokers(g)) for g in cfg.group_list()}
        self._kinds = {e.name: e.kind for e in cfg.engine_list()}
        self._lane_of = {e: lane for lane in self.lanes.values() for e in lane.engines}
        self._first = next(iter(self.lanes.values()))
        self._registry: dict[str, str] = {}
        self._names: dict[str, str] = {}  # role -> the Ray name of the detached actor playing it now
        self._hosts: dict[str, Any] = {}  # "relay", "api": stateless actors Ray restarts in place
        # two locks, always taken in this order: `_restart_lock` (a restart of the validator, a broker
        # adapter, the ledger or the reconciler: seconds, tens under load) and `_lock` (the lane table:
        # failovers and broker moves). A leader failover never waits for a restart to finish.
        self._restart_lock = threading.RLock()
        self._lock = threading.RLock()
        self._liveness = LivenessPolicy()  # the restartable children's verdicts (node/liveness.py)
        self._procs: dict[str, tuple[str, int]] = {}  # role -> (Ray node id, pid) when last learned
        self._here = _this_node()
        self._watch = watch
        self._watch_s = watch_interval_ms / 1000
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._hb_interval_ns = cfg.heartbeat_interval_ms * 1_000_000
        self._hb_dead_ns = cfg.heartbeat_misses * self._hb_interval_ns
        self._broker_dead_ns = cfg.broker_dead_ms * 1_000_000
        # the decisions (node/failover.py): fed by the heartbeat loop, the watch and the store probe
        self._policy = FailoverPolicy(self.lanes, self._hb_interval_ns, self._hb_dead_ns, self._broker_dead_ns,
                                      alive_silence_ns=cfg.leader_alive_silence_ms * 1_000_000)
        # the writes to Redis, off the decision path (a frozen store never holds a failover up)
        self._recorder = Recorder(redis_url, cfg.storage.monitoring_stream, on_store=self._policy.on_store)
        self._budget = RestartBudget()  # restart intensity per role; past it the role is given up
        self._stale_told: dict[str, float] = {}  # engine -> when it was last told to step down
        self.stale_demotes = 0  # engines told to step down that still beat as a replaced leader
        self._gave_up_recorded: set[str] = set()
        self._ledger_degraded_at_start = False
        self._picked_intake_port = 0  # with intake.port 0: the one picked at start (`_intake_port`)
        self._picked_ports: set[int] = set()  # every port picked for a child (`_pick_port`): none twice
        self.watch_errors = 0
        self.last_watch_error = ""
        self._broker_handling: set[str] = set()
        self._failing: set[str] = set()  # groups whose leader failover is under way
        self.restarts: list[dict] = []
        self.start_took_ms: dict[str, float] = {}  # per start-up phase (see start)
        self.failovers: list[dict] = []
        self.broker_failovers: list[dict] = []
        self.resumed: dict[str, Any] = {}  # what the last restart of this supervisor found (stats)
        self._notices: list[tuple[int, str]] = []  # (seq, one line) for `execnode up`: deaths and returns
        # numbered from the wall clock, so a restarted supervisor's notices still follow the ones `execnode up`
        # saw from the process before (a count from 0 again hid every notice after a supervisor restart)
        self._notice_seq = time.time_ns() // 1_000
        if _reconstructed():
            self._resume()

    @property
    def epoch(self) -> int:
        """The first group's epoch (the only one in a single-group node)."""
        return self._first.epoch

    @property
    def leader(self) -> str:
        return self._first.leader

    # ---------------------------------------------------------------- start / stop

    def start(self) -> dict[str, str]:
        with self._restart_lock, self._lock:
            if self._registry:
                return dict(self._registry)
            mark = _Stopwatch(self.start_took_ms)
            self._recorder.start()
            hb = self._bind_heartbeats(0)
            early: dict[str, tuple[Any, str] | None] = {}  # the validator and the API, spawned before needed
            try:
                self._start_children(hb, mark, early)
            except BaseException:
                for role, spawned in early.items():
                    if spawned is not None and self._names.get(role) != spawned[1]:
                        ray.kill(spawned[0], no_restart=True)  # not (yet) one of the node's children
                raise
            return dict(self._registry)

    def _start_children(self, hb: zmq.Socket, mark: "_Stopwatch", early: dict[str, tuple[Any, str] | None]) -> None:
        cfg, took = self._cfg, self.start_took_ms
        # children that need nothing of each other start at once (their processes and imports
        # overlap), each batch before the next that needs its addresses
        first = [self._spawn_relay()] + [self._spawn_broker(name) for name in self._brokers]
        # the ledger gives no address to anyone: its start (migrations, consumer groups from the
        # streams' first entry) finishes beside the engines'
        ledger = [self._spawn_ledger()] if self._database_url and cfg.storage.ledger else []
        # then the validator's process, and the API's when the intake's address is known beforehand
        # (each a fresh Python process with heavy imports, seconds under load): Ray starts them
        # after the first batch's (it starts as many processes at a time as there are CPUs), and
        # they load while the others start; the validator gets its addresses at `_start_validator`
        early["validator"] = self._spawn_validator()
        early["api"] = self._spawn_api() if cfg.api.enabled and self._intake_endpoint() else None
        try:
            self._await_started(first)
        except BaseException:
            for child in ledger:
                ray.kill(child.actor, no_restart=True)
            raise
        mark("relay_brokers")
        # the reconciler's process starts beside the engines (a ledger found degraded once started
        # has it killed: `_start_reconciler`); its start and the start-up run come after
        reconciler = self._new_reconciler() if self._reconciles_at_start() else None
        self._await_started([self._spawn_engine(engine, Role.LEADER if engine == lane.leader else Role.STANDBY)
                             for lane in self.lanes.values() for engine in lane.engines]
                            + ([_Spawned(reconciler[0], reconciler[0].pid.remote(), lambda _: None)]
                               if reconciler else []) + ledger)
        for lane in self.lanes.values():
            lane.leader_seen_ns = time.time_ns()
        self._checkpoint()
        mark("engines")
        startup = self._start_reconciler(reconciler)  # before the node trades: nothing is sent meanwhile
        mark("reconcile")
        self._start_validator(initial_states=tuple(  # each names the reconciler (node.reconcile_halts)
            (a.state, a.strategy_id, by_of(a.reason)) for a in (startup.actions if startup is not None else [])),
            spawned=early["validator"])
        if startup is not None and lifts_failed_halt(startup):  # a RECONCILE_FAILED halt a previous run left
            self._lift_failed_halts()
        mark("validator")
        if cfg.api.enabled:
            self._start_api(spawned=early["api"])
            mark("api")
        self._checkpoint()
        self._run_loops(hb)
        mark("total", since_start=True)
        lifecycle(self._log, "node_started", **{k + "_ms": v for k, v in took.items()})

    def _run_loops(self, hb: zmq.Socket) -> None:
        self._spawn_thread(self._heartbeat_loop, "heartbeats", hb)
        if self._watch:
            self._spawn_thread(self._watch_loop, "watch")

    def _bind_heartbeats(self, port: int) -> zmq.Socket:
        hb = zmq.Context.instance().socket(zmq.PULL)
        hb.setsockopt(zmq.LINGER, 0)
        self._registry["heartbeat"] = bind_at(hb, self._cfg.bind_host, port)
        return hb

    # ---------------------------------------------------------------- a restart of the supervisor

    def _resume(self) -> None:
        """Ray restarted this supervisor (its constructor runs again): read the checkpoint back, find the
        children by name, let the engines' own word on epochs and leaders win over a lagging checkpoint,
        kill orphans, start again whatever role has no live actor, bind the heartbeat socket at its old
        address and carry on (heartbeats, watch). Without a checkpoint: every child is killed and the
        node starts afresh."""
        t0, started_ns = time.perf_counter(), time.time_ns()
        cfg = self._cfg
        with self._restart_lock, self._lock:
            self._recorder.start()
            saved = decode_checkpoint(read_checkpoint(self._redis_url, checkpoint_key(cfg.node_id), timeout_ms=2000))
            if saved is None:
                self._kill_orphans({})
                self._record("supervisor_restart", {"resumed": False, "reason": "no checkpoint"})
                self.start()
                return
            self._budget.seed(SUPERVISOR, saved.restarts)
            if not self._may_restart(SUPERVISOR):  # dies in a loop: stop carrying on (`execnode up` exits non-zero)
                self._checkpoint_restarts(saved)
                return
            self._registry = {k: v for k, v in saved.registry.items() if k != "heartbeat"}
            self._engine_ports.update(saved.engine_ports)
            self._broker_ports.update(saved.broker_ports)
            self._policy.restore(saved.lanes)
            self._procs.update(saved.processes)
            found = _named_all(saved.children, cfg.ray_namespace)
            for role, actor in found.items():
                self._adopt_child(role, actor, saved.children[role])
            self._kill_orphans(self._names)
            to_promote = self._look_at_every_lane()
            hb = self._bind_heartbeats(int(saved.registry["heartbeat"].rsplit(":", 1)[1]))
            missing = self._start_missing()
            self._checkpoint()
            self.resumed = {"found": sorted(found), "missing": missing,
                            "groups": {name: lane.view() for name, lane in self.lanes.items()},
                            "promoted": {}, "took_ms": round((time.perf_counter() - t0) * 1e3, 1)}
            self._record("supervisor_restart", {"resumed": True, **self.resumed})
            self._notice("supervisor restarted: found " + ", ".join(sorted(found)) + "; started again: "
                         + (", ".join(missing) or "none"))
            self._run_loops(hb)
            if to_promote:  # once this constructor lets the lock go: a promotion may wait on a broker
                self._spawn_thread(self._promote_at_resume, "resume-promote", to_promote, started_ns)

    def _adopt_child(self, role: str, actor: Any, name: str) -> None:
        if role in ("relay", "api"):
            self._hosts[role] = actor
        else:
            self._actors[role] = actor
        self._names[role] = name

    def _kill_orphans(self, held: dict[str, str]) -> None:
        cfg = self._cfg
        for name in orphans(node_actor_names(cfg.node_id, cfg.ray_namespace), cfg.node_id + ".", held,
                            keep=(self._name("supervisor"),)):
            actor = _named(name, cfg.ray_namespace)
            if actor is not None:
                ray.kill(actor, no_restart=True)

    def _look_at_every_lane(self) -> list[Lane]:
        """A restarted supervisor's first look, at every lane at once: the engines' word on roles and
        epochs (`FailoverPolicy.adopt`), each answer taken as a beat; returns the groups whose leader's
        process is gone (or that answers as a standby: Ray restarted the process that led) and that have
        a live standby, to be promoted as soon as the supervisor is back (node.liveness.resume_verdict),
        not after its detection windows (`_promote_at_resume`)."""
        lanes = list(self.lanes.values())
        gone = {e for lane in lanes for e in lane.engines if self._process("engine:" + e) == Process.GONE}
        views = self._engine_views(lanes, skip=gone)
        now = time.time_ns()
        for lane in lanes:
            self._policy.adopt(lane, views)
            for engine in lane.engines:
                if engine in views:
                    self._policy.on_beat(engine, views[engine][0], views[engine][1], now)
        # a lone engine Ray is restarting has no live standby: the heartbeats promote it once it beats
        return [lane for lane in lanes
                if resume_verdict(views.get(lane.leader), Process.GONE if lane.leader in gone
                                  else self._process("engine:" + lane.leader)) == ResumeVerdict.PROMOTE
                and self._policy.best_standby(lane, exclude=lane.leader, now=now) is not None]

    def _promote_at_resume(self, lanes: list[Lane], restarted_ns: int) -> None:
        """The promotions `_look_at_every_lane` decided, each recorded in `resumed["promoted"]`: group ->
        {to, epoch, after_ms (from this supervisor's restart)}, or {error} (the heartbeats take it from
        there). A group another path failed over meanwhile is left alone."""
        promoted = self.resumed["promoted"]
        for lane in lanes:
            leader = lane.leader
            try:
                with self._lock:
                    if lane.leader != leader:  # the heartbeats were first
                        promoted[lane.name] = {"skipped": "leader " + lane.leader + " leads"}
                        continue
                    event = self.failover(reason=Detector.RESUME, detected_ns=restarted_ns, group=lane.name)
                promoted[lane.name] = {"to": event["to"], "epoch": event["epoch"],
                                       "after_ms": round((event["promoted_ns"] - restarted_ns) / 1e6, 1)}
            except Exception as exc:  # noqa: BLE001 - recorded by failover; the heartbeats take it from here
                promoted[lane.name] = {"error": _brief(exc)}

    def _engine_views(self, lanes: list[Lane], skip: frozenset[str] | set[str] = frozenset(),
                      timeout_s: float = 10.0) -> dict[str, tuple[str, int]]:
        """name -> (role, epoch), from each engine of `lanes` that answers within one deadline for all
        (`skip`: engines whose process is known gone, not waited for while Ray restarts them)."""
        refs = {e: self._actors["engine:" + e].stats.remote() for lane in lanes for e in lane.engines
                if "engine:" + e in self._actors and e not in skip}
        deadline = time.monotonic() + timeout_s
        views = {}
        for engine, ref in refs.items():
            try:
                got = ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))
                views[engine] = (str(got.get("role", "")), int(got.get("epoch", 0)))
            except Exception:  # noqa: BLE001 - a dead or slow engine: Ray restarts it, it rejoins as a standby
                continue
        return views

    def _start_missing(self) -> list[str]:
        """Roles with no live actor after a restart of the supervisor: started again (in start order)."""
        cfg = self._cfg
        missing = []
        if "relay" not in self._hosts:
            missing.append("relay")
            self._await_started([self._spawn_relay()])
        if self._database_url and cfg.storage.ledger and "ledger" not in self._actors:
            missing.append("ledger")
            self._await_started([self._spawn_ledger()])
        brokers_started = []
        for name in self._brokers:
            if "broker:" + name not in self._actors:
                missing.append("broker:" + name)
                self._await_started([self._spawn_broker(name)])
                brokers_started.append(name)
        for lane in self.lanes.values():
            for engine in lane.engines:
                if "engine:" + engine not in self._actors:
                    missing.append("engine:" + engine)
                    self._await_started([self._spawn_engine(engine, Role.STANDBY)])
        if self._database_url and cfg.storage.ledger and cfg.reconcile.enabled and "reconciler" not in self._actors:
            missing.append("reconciler")
            self._spawn_reconciler()
        if "validator" not in self._actors:
            missing.append("validator")
            self._start_validator()
            self._resync_leaders()
        elif brokers_started:  # a broker adapter that died with this supervisor: its leaders re-drive what it lost
            self._resync_leaders([lane for lane in self.lanes.values() if lane.broker in brokers_started])
        if cfg.api.enabled and "api" not in self._hosts:
            missing.append("api")
            self._start_api()
        return missing

    def stop(self) -> None:
        self._stopping.set()
        api = self._hosts.pop("api", None)
        if api is not None:
            _stop_and_kill(api)
        with self._restart_lock, self._lock:
            roles = (["validator"] + ["engine:" + e for e in self._lane_of]
                     + ["broker:" + b for b in self._brokers] + ["reconciler", "ledger"])
            for role in roles:
                actor = self._actors.pop(role, None)
                if actor is not None:
                    _stop_and_kill(actor)
            for t in self._threads:
                t.join(2)
            relay = self._hosts.pop("relay", None)
            if relay is not None:
                _stop_and_kill(relay)
            self._kill_orphans({})  # whatever else bears the node's name (NodeRuntime.stop checks too)
            self._names = {}
            self._registry = {}
        self._recorder.stop()

    # ---------------------------------------------------------------- queries

    def registry(self) -> dict[str, str]:
        return dict(self._registry)

    def redis_url(self) -> str:
        """The Redis the node logs to (the embedded one's too): `execnode report` reads its streams."""
        return self._redis_url

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
        for role in self._expected_roles():
            out.setdefault(role, {"down": "restarting"})
        out["engine"] = out.get("engine:" + self.leader, {})
        out["broker"] = out.get("broker:" + self._first.broker, {})
        # the node trades, but something is behind (PostgreSQL down)
        degraded = [role + ": " + str(s["degraded"]) for role, s in out.items() if isinstance(s, dict) and s.get("degraded")]
        out["supervisor"] = to_plain(SupervisorStats(
            epoch=self.epoch, leader=self.leader, restarts=list(self.restarts), start_took_ms=dict(self.start_took_ms),
            failovers=list(self.failovers), broker_failovers=list(self.broker_failovers),
            groups={name: lane.view() for name, lane in self.lanes.items()},
            epoch_grants=len(self._policy.grants), recorder=self._recorder.stats(), stale_demotes=self.stale_demotes,
            health=self.health(), watch_errors=self.watch_errors, resumed=self.resumed,
            last_watch_error=self.last_watch_error, degraded=degraded))  # plain data: this is the Ray boundary
        return out

    def _expected_roles(self) -> list[str]:
        """Every role the node runs (one missing from the table is being restarted, or was given up)."""
        cfg = self._cfg
        if not self._registry or self._stopping.is_set():
            return []
        roles = ["validator"] + ["engine:" + e for e in self._lane_of] + ["broker:" + b for b in self._brokers]
        if self._database_url and cfg.storage.ledger:
            roles.append("ledger")
            if cfg.reconcile.enabled and not self._ledger_degraded_at_start:
                roles.append("reconciler")
        return roles

    def call(self, role: str, method: str, *args: Any) -> Any:
        return ray.get(self._actor(role).call.remote(method, *args), timeout=30)

    def pid(self, role: str) -> int:
        if role == "supervisor":
            import os

            return os.getpid()
        if role in self._hosts:
            return ray.get(self._hosts[role].pid.remote(), timeout=10)
        return ray.get(self._actor(role).pid.remote(), timeout=10)

    def _actor(self, role: str) -> Any:
        """`engine` and `broker` name the first group's leader and active broker."""
        if role == "engine":
            role = "engine:" + self.leader
        elif role == "broker":
            role = "broker:" + self._first.broker
        return self._actors[role]

    # ---------------------------------------------------------------- engine failover

    def failover(self, to: str | None = None, reason: str = "manual", detected_ns: int = 0,
                 group: str | None = None) -> dict:
        """Make `to` (default: the freshest standby by priority) the leader of its group (default:
        the first group) with a new epoch."""
        reason = str(reason)  # a Detector or a caller's word: recorded as plain text
        with self._lock:
            t0 = time.time_ns()
            if to is not None and to not in self._lane_of:
                raise ValueError("unknown engine " + repr(to) + " (engines: " + ", ".join(self._lane_of) + ")")
            lane = self._lane_of[to] if to is not None else self._lane(group)
            old = lane.leader
            target = to or self._best_standby(lane, exclude=old)
            if target is None:
                raise RuntimeError("no live standby engine to fail over to in group " + lane.name)
            if target == old and to is not None:
                return {"group": lane.name, "from": old, "to": old, "epoch": lane.epoch, "changed": False}
            if old != target and reason == Detector.MANUAL:
                try:  # a live old leader steps down first
                    ray.get(self._actors["engine:" + old].demote.remote(), timeout=10)
                except Exception:  # noqa: BLE001 - fenced by the epoch all the same
                    pass
            grant = self._grant(lane, GrantKind.PROMOTE, target, reason)
            lane.promoting = target
            try:
                actor = self._actors["engine:" + target]
                promoting = actor.promote.remote(grant.epoch)
                whereabouts = actor.process.remote()  # answered beside the promotion (a control thread)
                if old != target and reason != Detector.MANUAL:
                    # a leader thought dead is told once the promotion is on its way (a slow one would
                    # step down anyway at its first fenced send; a dead one is fenced by the epoch)
                    self._actors["engine:" + old].demote.remote()
                promoted, learned = self._await_promotion(lane, target, promoting, whereabouts)
            except Exception as exc:
                wait_ns = self._policy.promotion_failed(lane, time.time_ns())
                self._record("failover_error", {"group": lane.name, "to": target, "epoch": grant.epoch,
                                                "reason": reason, "retry_in_ms": wait_ns // 1_000_000,
                                                "error": _brief(exc)})
                raise
            finally:
                lane.promoting, lane.promoting_pid = "", 0
            self._policy.promoted(lane, target, time.time_ns())
            if not learned:  # it never said where it runs during the promotion: ask now
                self._learn_process("engine:" + target, self._actors["engine:" + target])
            self._checkpoint()
            if reason != Detector.MANUAL:
                self._notice("engine:" + old + " lost the lead (" + reason + "); engine:" + target
                             + " leads group " + lane.name + " at epoch " + str(lane.epoch))
            if lane is self._first:
                self._registry["engine"] = self._registry["engine:" + target]
            event = {"group": lane.name, "from": old, "to": target, "epoch": lane.epoch, "reason": reason,
                     "detected_ns": detected_ns, "started_ns": t0, "promoted_ns": time.time_ns(),
                     "promote_us": promoted.get("took_us"), "redriven": promoted.get("redriven"),
                     "asked": promoted.get("asked"), "marks_us": promoted.get("marks_us"),
                     "log_entries_read": promoted.get("log_entries_read"),
                     "call_us": (promoted.get("entered_ns", t0) - t0) // 1000}
            self.failovers.append(event)
            self._record("failover", event)
            self._reconcile_later("failover")
            return event

    def _await_promotion(self, lane: Lane, target: str, promoting: Any, whereabouts: Any,
                         timeout_s: float = 120.0) -> tuple[dict, bool]:
        """The promotion's answer, and whether the target said where it runs meanwhile (its process
        is then learned, as `_learn_process` would). A target killed meanwhile fails it as soon as its
        process is gone (checked every 50 ms once it said), not when Ray notices: Ray's error for a
        call to a kill -9ed actor came 1.1-1.9 s after the kill on a quiet machine, and the failover
        waited that long (longer under load) before trying the next standby."""
        deadline = time.monotonic() + timeout_s
        learned = False
        while True:
            ready, _ = ray.wait([promoting], timeout=0.05)
            if ready:
                return ray.get(promoting), learned
            if whereabouts is not None and ray.wait([whereabouts], timeout=0)[0]:
                try:
                    node_id, pid = ray.get(whereabouts)
                    self._procs["engine:" + target] = (str(node_id), int(pid))
                    learned = True
                    if self._here and str(node_id) == self._here:  # elsewhere: Ray's word alone
                        lane.promoting_pid = int(pid)
                except Exception:  # noqa: BLE001 - no answer (it died first): Ray's error will come
                    pass
                whereabouts = None
            if lane.promoting_pid and not pid_alive(lane.promoting_pid):
                raise RuntimeError("engine:" + target + " died during its promotion (process "
                                   + str(lane.promoting_pid) + " gone)")
            if time.monotonic() > deadline:
                raise TimeoutError("engine:" + target + " did not finish its promotion in " + str(timeout_s) + " s")

    def failback(self, group: str | None = None) -> dict:
        """Back to the engine of highest priority (the first configured) of the group."""
        lane = self._lane(group)
        return self.failover(to=lane.engines[0], reason="manual")

    def _lane(self, group: str | None) -> Lane:
        if group is None:
            return self._first
        if group not in self.lanes:
            raise ValueError("unknown group " + repr(group) + " (groups: " + ", ".join(self.lanes) + ")")
        return self.lanes[group]

    def _best_standby(self, lane: Lane, exclude: str) -> str | None:
        return self._policy.best_standby(lane, exclude, time.time_ns())

    def _grant(self, lane: Lane, kind: GrantKind, to: str, reason: str):
        """A new epoch for the lane, recorded (queued for Redis) before anyone uses it."""
        grant = self._policy.grant(lane, kind, to, reason, time.time_ns())
        fields = msgspec.to_builtins(grant)
        fields["grant"] = fields.pop("kind")  # the record's own `kind` is "epoch_grant"
        self._record("epoch_grant", fields)
        self._checkpoint()
        return grant

    def _checkpoint(self) -> None:
        """The lane table (epochs, leaders, brokers), the children's names and the registry to Redis,
        for a restarted supervisor (node.supervisor_checkpoint); queued, written in order."""
        saved = SupervisorCheckpoint(lanes=self._policy.checkpoint(), children=dict(self._names),
                                     registry=dict(self._registry), engine_ports=dict(self._engine_ports),
                                     broker_ports=dict(self._broker_ports), processes=dict(self._procs),
                                     restarts=self._budget.history(SUPERVISOR))
        self._recorder.checkpoint(checkpoint_key(self._cfg.node_id), msgspec.json.encode(saved))

    def _checkpoint_restarts(self, saved: SupervisorCheckpoint) -> None:
        """The checkpoint read back, with this restart counted (a supervisor that gave up resumes nothing)."""
        self._recorder.checkpoint(checkpoint_key(self._cfg.node_id), msgspec.json.encode(
            msgspec.structs.replace(saved, restarts=self._budget.history(SUPERVISOR))))

    def _heartbeat_loop(self, hb: zmq.Socket) -> None:
        """Engines' beats in; the brokers pinged (a DEALER each) and their answers in; the leaders'
        processes on this machine watched for their exit (node.exit_watch)."""
        poll_ms = max(1, self._cfg.heartbeat_interval_ms // 4)
        pings = _BrokerPings(self._registry, list(self._brokers), self._cfg.heartbeat_interval_ms)
        policy = self._policy
        poller = zmq.Poller()
        poller.register(hb, zmq.POLLIN)
        exits = ExitWatch()
        # silence is judged only over time this loop was listening (after a restart: once peers reconnected)
        policy.listening(time.time_ns(), grace_ns=policy.settle_ns if self.resumed else 0)
        try:
            while not self._stopping.is_set():
                opened, closed = exits.sync(self._leader_pids())
                for fd in closed:
                    poller.unregister(fd)
                for fd in opened:
                    poller.register(fd, zmq.POLLIN)
                ready = dict(poller.poll(poll_ms))
                for fd in [fd for fd in ready if fd is not hb]:
                    gone = exits.exited(fd)
                    poller.unregister(fd)
                    if gone is not None:
                        self._on_leader_exited(*gone)
                if hb in ready:
                    while True:
                        try:
                            beat = heartbeat_decoder.decode(hb.recv(zmq.NOBLOCK))
                        except zmq.Again:
                            break
                        policy.on_beat(beat.sender, beat.role, beat.epoch, time.time_ns())
                        if policy.stale_leader(beat.sender, beat.role, beat.epoch):
                            self._demote_stale(beat.sender, beat.epoch)
                now = time.time_ns()
                for name in pings.exchange(now):
                    policy.on_broker_answer(name, now)
                for lane in self.lanes.values():
                    if (policy.leader_silent(lane, now) and policy.may_attempt(lane, now)
                            and not self._stopping.is_set() and self._leader_dead_enough(lane, now)):
                        self._on_leader_silent(lane, now)
                for name in self._brokers:
                    if policy.broker_silent(name, now) and not self._stopping.is_set():
                        self._on_broker_silent(name)
        finally:
            exits.close()
            pings.close()
            hb.close(0)

    def _leader_pids(self) -> dict[str, int]:
        """role -> pid of each group's leader whose process was learned on this machine."""
        out = {}
        for lane in self.lanes.values():
            role = "engine:" + lane.leader
            known = self._procs.get(role)
            if known is not None and self._here and known[0] == self._here:
                out[role] = known[1]
        return out

    def _on_leader_exited(self, role: str, pid: int) -> None:
        """A leader's process exited (its pid descriptor polled readable): its group fails over to a
        live standby at once, on a thread of its own (this loop keeps reading beats), without waiting
        for the missed heartbeats. Checked again under the lock: still that engine leading, still that
        process learned for it. No live standby (a lone engine Ray is restarting): the heartbeats'."""
        engine = role.removeprefix("engine:")
        lane = self._lane_of.get(engine)
        if lane is None or lane.leader != engine or lane.name in self._failing:
            return
        detected_ns = time.time_ns()
        if not self._policy.may_attempt(lane, detected_ns):  # after a failed promotion: its backoff first
            return
        target = self._policy.ray_target(lane, detected_ns)  # a live standby other than the leader itself
        if target is None:
            return

        def due() -> bool:
            known = self._procs.get(role)
            return lane.leader == engine and known is not None and known[1] == pid and not self._stopping.is_set()

        self._failover_aside(lane, "supervisor-exit-", due, to=target, reason=Detector.EXIT, detected_ns=detected_ns)

    def _leader_dead_enough(self, lane: Lane, now: int) -> bool:
        """A leader silent a few beats is failed over at once when its process is gone (or elsewhere);
        while its process is still here it is only slow until `leader_alive_silence_ms` (node.failover)."""
        return self._policy.leader_silent(lane, now, self._leader_alive(lane))

    def _leader_alive(self, lane: Lane) -> bool:
        return self._process("engine:" + lane.leader) == Process.ALIVE

    def _demote_stale(self, engine: str, epoch: int) -> None:
        """Tell an engine that still beats as a leader its group no longer has to step down (once
        a second at most per engine; never waits: the heartbeat loop keeps reading beats)."""
        now = time.monotonic()
        if now - self._stale_told.get(engine, 0.0) < 1.0 or self._stopping.is_set():
            return
        self._stale_told[engine] = now
        actor = self._actors.get("engine:" + engine)
        if actor is None:
            return
        actor.demote.remote()
        self.stale_demotes += 1
        self._record("stale_leader", {"engine": engine, "epoch": epoch})

    def _on_leader_silent(self, lane: Lane, detected_ns: int) -> None:
        """Fail the group's silent leader over on a thread of its own, so this loop keeps reading
        beats; the decision is checked again under the lock (another path may have acted, or the
        leader spoken, meanwhile). Once at a time per group."""
        if lane.name in self._failing:
            return
        leader = lane.leader

        def due() -> bool:
            return self._policy.heartbeat_failover_due(lane, leader, time.time_ns(), self._leader_alive(lane))

        self._failover_aside(lane, "supervisor-failover-", due, reason=Detector.HEARTBEAT, detected_ns=detected_ns,
                             group=lane.name)

    def _failover_aside(self, lane: Lane, thread: str, due: Callable[[], bool], **failover: Any) -> None:
        """`failover(**failover)` on a thread of its own (the heartbeat loop keeps reading beats), if
        `due()` still says so under the lock (another path may have acted, or the leader spoken,
        meanwhile); once at a time per group. A failure is recorded by `failover` and retried by the
        heartbeats after its backoff."""
        self._failing.add(lane.name)

        def run() -> None:
            try:
                with self._lock:
                    if due():
                        self.failover(**failover)
            except Exception:  # noqa: BLE001 - recorded by failover; retried after its backoff
                pass
            finally:
                self._failing.discard(lane.name)

        threading.Thread(target=run, name=thread + lane.name, daemon=True).start()

    # ---------------------------------------------------------------- broker failover

    def broker_failover(self, group: str | None = None, to: str | None = None, reason: str = "manual") -> dict:
        """Move a group to broker `to` (default: its next live broker by priority) with a new epoch."""
        with self._lock:
            lane = self._lane(group)
            if to is not None and to not in lane.brokers:
                raise ValueError("group " + lane.name + " has no broker " + repr(to) + " (" + ", ".join(lane.brokers) + ")")
            target = to or self._next_broker(lane, exclude=lane.broker)
            if target is None:
                raise RuntimeError("no live broker to move group " + lane.name + " to")
            return self._move_lane(lane, target, reason)

    def _next_broker(self, lane: Lane, exclude: str) -> str | None:
        """The next live broker; for a group led by an engine that cannot strand orders (Nautilus:
        see its switch_broker), only one in front of the same account."""
        same_account_only = self._kinds.get(lane.leader) == EngineKind.NAUTILUS
        return self._policy.next_broker(lane, exclude, time.time_ns(), same_account_only)

    def _move_lane(self, lane: Lane, target: str, reason: str) -> dict:
        """The group's engines onto broker `target` with a new epoch; the leader first (it recovers
        against the new broker), then the standbys (they only reconnect)."""
        t0 = time.time_ns()
        old = lane.broker
        same_account = lane.accounts[old] == lane.accounts[target]
        endpoint = self._registry["broker:" + target]
        grant = self._grant(lane, GrantKind.MOVE, target, reason)
        try:
            moved = ray.get(self._actors["engine:" + lane.leader].switch_broker.remote(
                endpoint, grant.epoch, same_account), timeout=120)
        except Exception as exc:
            # the lane stays on its broker (its view is the truth); the grant is recorded
            self._record("broker_failover_error", {"group": lane.name, "to": target, "epoch": grant.epoch,
                                                   "error": _brief(exc)})
            raise
        self._policy.moved(lane, target, time.time_ns())
        self._checkpoint()
        for engine in lane.engines:
            if engine != lane.leader and "engine:" + engine in self._actors:
                self._actors["engine:" + engine].switch_broker.remote(endpoint, grant.epoch, same_account)
        if lane is self._first:
            self._registry["broker"] = endpoint
        event = {"group": lane.name, "from": old, "to": target, "epoch": lane.epoch, "reason": reason,
                 "same_account": same_account, "started_ns": t0, "moved_ns": time.time_ns(),
                 "stranded": moved.get("stranded"), "redriven": moved.get("redriven"), "took_us": moved.get("took_us")}
        self.broker_failovers.append(event)
        self._record("broker_failover", event)
        self._reconcile_later("broker_failover")
        return event

    def _on_broker_silent(self, name: str) -> None:
        """Handle a silent broker on a thread of its own (a restart takes a second or two, and the
        heartbeat loop must keep watching the engines meanwhile); once per death."""
        if name in self._broker_handling:
            return
        self._broker_handling.add(name)
        actor = self._actors.get("broker:" + name)

        def run() -> None:
            try:
                self._broker_died(name, actor, "heartbeat")
            finally:
                self._broker_handling.discard(name)

        threading.Thread(target=run, name="supervisor-broker-" + name, daemon=True).start()

    def _broker_died(self, name: str, actor: Any, reason: str) -> None:
        """Every group on broker `name` moves to its next live broker; then the adapter comes back
        on its old address (a standby broker), or, for a group with nowhere to go, the leader
        resyncs with it. Called from the heartbeat and the watch threads: acts once per death. Each move
        holds the lane table's lock; the restart only the restart lock, and a group with nowhere to go
        takes no lane lock at all: a leader failover meanwhile holds it while its promotion asks this
        broker, which answers only once the restart is done (a first version waited on it here and
        held the adapter's restart up until the promotion gave up)."""
        with self._restart_lock:
            if self._stopping.is_set() or actor is None or self._actors.get("broker:" + name) is not actor:
                return  # stopping, or already replaced
            if reason == Detector.HEARTBEAT:
                silent = time.time_ns() - self._policy.broker_seen_ns(name) > self._broker_dead_ns
                ray_dead = silent and _state(actor, timeout_s=0.5) == "dead"  # asked only when silent
                if not self._policy.broker_dead(name, time.time_ns(), ray_dead,
                                                venue_inside=self._brokers[name].venue_inside):
                    return
            stay, moved = [], []
            for lane in self.lanes.values():
                if lane.broker != name:
                    continue
                if self._next_broker(lane, exclude=name) is None:
                    # nowhere to go: no lane lock (a failover holding it may be waiting on this adapter)
                    stay.append(lane)
                    continue
                with self._lock:
                    target = self._next_broker(lane, exclude=name)
                    if lane.broker != name:
                        continue
                    if target is None:
                        stay.append(lane)
                        continue
                    try:
                        moved.append(self._move_lane(lane, target, reason="broker " + name + " died (" + reason + ")"))
                    except Exception:  # noqa: BLE001 - recorded by _move_lane; the adapter comes back below
                        stay.append(lane)
            self.restart_broker(reason="died", name=name, resync_lanes=stay)
        for event in moved:  # across accounts: the adapter is back, ask it about the stranded
            if not event["same_account"] and event["stranded"]:
                threading.Thread(target=self._settle_stranded, args=(event, name), daemon=True,
                                 name="supervisor-settle-" + name).start()

    def _settle_stranded(self, event: dict, name: str) -> None:
        """Ask the leader of the moved group to settle its orders stranded at broker `name` (back on its
        address) until that broker knows each: an order whose place died with the old adapter is
        UNKNOWN there until its sweep finds it or settles it (Schwab: `unknown_settle_ms`). Asked every
        `_SETTLE_EVERY_S` for at most `_SETTLE_FOR_S`; what stays in doubt is the operator's
        (`execnode orders stranded`). The outcome lands in the event (`settled`), on a thread of its own."""
        deadline = time.monotonic() + _SETTLE_FOR_S
        attempts, redriven, found = 0, 0, None
        while True:
            attempts += 1
            try:
                leader = self._actors["engine:" + self.lanes[event["group"]].leader]
                result = dict(ray.get(leader.settle_stranded.remote(self._registry["broker:" + name]), timeout=60))
            except Exception as exc:  # noqa: BLE001 - asked again; at the end they stay UNKNOWN, for the operator
                result = {"error": type(exc).__name__ + ": " + str(exc).splitlines()[0][:200]}
            if "error" not in result:
                redriven += result.get("redriven", 0)
                found = result.get("found", 0) + (found or 0)  # each round adopts what it settled
            if ("error" not in result and not result.get("still_stranded")) or time.monotonic() > deadline:
                break
            if self._stopping.wait(_SETTLE_EVERY_S):
                break
        if found is not None:
            result.update(found=found, redriven=redriven)
        result["attempts"] = attempts
        event["settled"] = result

    # ---------------------------------------------------------------- validator restarts

    def restart(self, role: str = "validator", reason: str = "manual", dead: Any = None) -> dict[str, str]:
        """Replace the validator with a fresh one on the same port; returns the registry. With
        `dead` (the handle found dead, or hung: node.liveness), only if that one is still the current
        validator: it may have been stopped or replaced while the death was being noticed."""
        if role != "validator":
            raise ValueError("engines fail over (failover/failback); only the validator restarts")
        t0 = time.perf_counter()
        with self._restart_lock:
            if dead is not None and self._actors.get("validator") is not dead:
                return dict(self._registry)
            if reason in _UNASKED and not self._may_restart("validator"):
                return dict(self._registry)
            if reason in _UNASKED:
                self._notice("validator " + reason)
            old = self._actors.pop("validator", None)
            if old is not None:
                ray.kill(old, no_restart=True)
            with _kept_on_failure(self._actors, "validator", old):
                self._start_validator()
            resync = self._resync_leaders()
            self.restarts.append({"role": role, "reason": reason, "resync": resync,
                                  "took_ms": round((time.perf_counter() - t0) * 1e3, 1)})
            self._record("restart", self.restarts[-1])
            if reason in _UNASKED:
                self._notice("validator back")
            return dict(self._registry)

    def _resync_leaders(self, lanes: list[Lane] | None = None) -> dict:
        """A validator that died may have logged and acknowledged batches it never forwarded (and a
        restarted broker adapter may lack orders): each leader reads the signal log after its
        checkpoint, asks the broker and sends what it lacks. One group: its answer alone."""
        lanes = list(self.lanes.values()) if lanes is None else lanes
        refs = {lane.name: self._actors["engine:" + lane.leader].resync.remote() for lane in lanes}
        deadline = time.monotonic() + 30.0  # one for all: a leader Ray is restarting holds up no other
        out = {}
        for group, ref in refs.items():
            try:
                out[group] = ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))
            except Exception as exc:  # noqa: BLE001 - recorded; the next failover replays anyway
                out[group] = {"error": _brief(exc)}
        return out[lanes[0].name] if len(self.lanes) == 1 and lanes else out

    def stop_role(self, role: str) -> None:
        """Stop the validator and leave it down (the watch ignores it) until `start_role`."""
        with self._restart_lock:
            actor = self._actors.pop(role, None)
            self._names.pop(role, None)
            self._checkpoint()
            if actor is not None:
                _kill_and_wait(actor)

    def start_role(self, role: str) -> dict[str, str]:
        with self._restart_lock:
            if role not in self._actors and role == "validator":
                self._start_validator()
                self._resync_leaders()
            return dict(self._registry)

    # ---------------------------------------------------------------- spawning

    def _start_broker(self, name: str) -> None:
        self._await_started([self._spawn_broker(name)])

    def _spawn_broker(self, name: str) -> _Spawned:
        cfg = self._cfg
        port = self._kept_port(self._broker_ports, name, cfg.bind_host)
        # the node's resolved Redis (the embedded one's too): a paper venue keeps its account there
        cfg = msgspec.structs.replace(cfg, storage=msgspec.structs.replace(cfg.storage, redis_url=self._redis_url))
        actor_name = self._name("broker:" + name + "@" + str(time.time_ns()))
        broker = spawn("broker", actor_name, cfg.ray_namespace, cfg, self._brokers[name], port)

        def started(endpoints: dict[str, str]) -> None:
            self._registry["broker:" + name] = endpoints["orders"]
            self._own("broker:" + name, broker, actor_name)
            self._registry["broker"] = self._registry.get("broker:" + self._first.broker, "")
            self._policy.on_broker_answer(name, time.time_ns())

        return _Spawned(broker, broker.start.remote(), started)

    def restart_broker(self, reason: str = "manual", name: str | None = None,
                       resync_lanes: list[Lane] | None = None) -> dict:
        """A new broker adapter on the same address (engines reconnect by themselves); then the
        leaders of the groups still on it (default: every group whose active broker it is) ask it
        what the venue has and re-drive the rest."""
        t0 = time.perf_counter()
        with self._restart_lock:
            name = name or self._first.broker
            if reason == "died" and not self._may_restart("broker:" + name):
                return {"role": "broker", "broker": name, "gave_up": True}
            if reason == "died":
                self._notice("broker:" + name + " died")
            old = self._actors.pop("broker:" + name, None)
            if old is not None:
                ray.kill(old, no_restart=True)
            with _kept_on_failure(self._actors, "broker:" + name, old):
                self._start_broker(name)
            if reason == "died":
                self._notice("broker:" + name + " back")
            if resync_lanes is None:
                resync_lanes = [lane for lane in self.lanes.values() if lane.broker == name]
            resync = self._resync_leaders(resync_lanes) if resync_lanes else {}
            event = {"role": "broker", "broker": name, "reason": reason, "resync": resync,
                     "took_ms": round((time.perf_counter() - t0) * 1e3, 1)}
            self.restarts.append(event)
            self._record("restart", event)
            self._reconcile_later("broker_restart")
            failed = self._resync_failed(resync_lanes or [], resync)
            if failed:  # what the dead adapter lost is re-driven by a resync only: asked again until answered
                self._spawn_thread(self._resync_again, "resync-" + name, failed, event)
            return event

    def _resync_failed(self, lanes: list[Lane], answer: dict) -> list[Lane]:
        """The lanes whose leader's resync did not answer (`_resync_leaders`' answer: one lane's, or per lane)."""
        per_lane = {lanes[0].name: answer} if len(self.lanes) == 1 and lanes else answer
        return [lane for lane in lanes if "error" in (per_lane.get(lane.name) or {})]

    def _resync_again(self, lanes: list[Lane], event: dict) -> None:
        """A leader's resync after a broker restart failed (the leader busy or restarting, the new
        adapter slow to list): the orders the dead adapter never took reach the venue only by a resync
        (the leader's own look at them leaves an order the broker does not list UNKNOWN), so it is
        asked again every `_RESYNC_EVERY_S` for at most `_RESYNC_FOR_S`; the outcome lands in the event."""
        deadline = time.monotonic() + _RESYNC_FOR_S
        tries = 0
        while lanes and time.monotonic() < deadline and not self._stopping.wait(_RESYNC_EVERY_S):
            tries += 1
            lanes = self._resync_failed(lanes, self._resync_leaders(lanes))
        event["resync_retries"] = tries
        event["resync_failed"] = [lane.name for lane in lanes]
        if lanes and not self._stopping.is_set():
            self._notice("resync after a broker restart failed for " + ", ".join(event["resync_failed"])
                         + ": orders the dead adapter lost wait for a failover (execnode admin failover)")

    def _spawn_engine(self, name: str, role: str) -> _Spawned:
        cfg = self._cfg
        lane = self._lane_of[name]
        engine = next(e for e in cfg.engine_list() if e.name == name)
        port = self._kept_port(self._engine_ports, name, cfg.bind_host)
        actor_name = self._name("engine:" + name)
        actor = spawn(
            "engine",
            actor_name,
            cfg.ray_namespace,
            cfg,
            engine,
            wiring=EngineWiring(
                redis_url=self._redis_url,
                broker_endpoint=self._registry["broker:" + lane.broker],
                publish_endpoint=self._registry["publish"],
                epoch=lane.epoch,
                recover=role == "leader",
                role=role,
                heartbeat_endpoint=self._registry["heartbeat"],
                follow_endpoint=self._registry["events"],
                port=port,
                group=lane.name,
                spawn_id=secrets.token_hex(8),  # node.engine_opening: a Ray restart opens as a standby
            ),
        )

        def started(endpoints: dict[str, str]) -> None:
            self._registry["engine:" + name] = endpoints["intake"]
            if role == "leader" and lane is self._first:
                self._registry["engine"] = endpoints["intake"]
            self._own("engine:" + name, actor, actor_name)

        return _Spawned(actor, actor.start.remote(), started)

    def _pick_port(self, host: str) -> int:
        """A free port for a child to bind, never one this supervisor picked or kept before."""
        taken = self._picked_ports | set(self._engine_ports.values()) | set(self._broker_ports.values())
        port = free_port(host, taken)
        self._picked_ports.add(port)
        return port

    def _kept_port(self, ports: dict[str, int], name: str, host: str) -> int:
        """The port `name` had (a respawn binds the same one), else one picked now and kept (not
        `setdefault`: that picked, and recorded as taken, a port on every respawn)."""
        port = ports.get(name)
        if port is None:
            port = ports[name] = self._pick_port(host)
        return port

    def _engine_intakes(self) -> list[str]:
        return [self._registry["engine:" + e] for e in self._lane_of]

    def _intake_port(self) -> int:
        """The validator's intake port: the configured one; with 0 (any), the one it had (a restarted
        validator keeps the address clients use), else one picked now and kept (the API, spawned
        before the validator, is told the address); with a wildcard bind 0 still (the validator may
        run on another machine: it picks a port free there, and the API starts after it)."""
        cfg = self._cfg
        if cfg.intake.port:
            return cfg.intake.port
        if "intake" in self._registry:
            return int(self._registry["intake"].rsplit(":", 1)[1])
        if is_wildcard(cfg.bind_host):
            return 0
        if not self._picked_intake_port:
            self._picked_intake_port = self._pick_port(cfg.bind_host)
        return self._picked_intake_port

    def _intake_endpoint(self) -> str:
        """The intake's address as the validator will advertise it, when known before it binds (a
        wildcard bind advertises the address of whichever machine Ray puts the validator on): ""."""
        host = self._cfg.bind_host
        return "" if is_wildcard(host) else "tcp://" + advertised(host) + ":" + str(self._intake_port())

    def _spawn_validator(self) -> tuple[Any, str]:
        """A validator's process, preparing what needs only its config; `_start_validator` opens it."""
        cfg = self._cfg
        cfg = msgspec.structs.replace(cfg, intake=msgspec.structs.replace(cfg.intake, port=self._intake_port()))
        actor_name = self._name("validator@" + str(time.time_ns()))
        return spawn_later("validator", actor_name, cfg.ray_namespace, cfg), actor_name

    def _start_validator(self, initial_states: tuple = (), spawned: tuple[Any, str] | None = None) -> None:
        validator, actor_name = spawned or self._spawn_validator()
        try:  # past any service's own start timeout (Nautilus: 70 s), and the preparing's
            opened = ray.get(validator.open.remote(self._redis_url, self._engine_intakes(), self._registry["events"],
                                                   initial_states), timeout=120)
        except Exception:
            ray.kill(validator, no_restart=True)  # only a started actor joins the table the watch polls
            raise
        self._registry["intake"] = opened["intake"]
        self._own("validator", validator, actor_name)

    def _spawn_relay(self) -> _Spawned:
        """The events relay, an actor of its own on fixed ports (Ray restarts it where peers look)."""
        cfg = self._cfg
        host = cfg.bind_host
        name = self._name("relay")
        relay = spawn_plain(RelayActor, "relay", name, cfg.ray_namespace, cfg, host,
                            cfg.events_port or self._pick_port(host), self._pick_port(host))

        def started(endpoints: dict[str, str]) -> None:
            self._registry.update(endpoints)
            self._own("relay", relay, name)

        return _Spawned(relay, relay.endpoints.remote(), started)

    def _spawn_api(self) -> tuple[Any, str]:
        """The HTTP API's actor, with every argument (Ray replays them when it restarts the actor): the
        intake's address is the validator's, known beforehand (`_intake_endpoint`) or by now."""
        cfg = self._cfg
        port = cfg.api.port
        if not port:
            old = self._registry.get("api", "")
            port = int(old.rsplit(":", 1)[1]) if old else self._pick_port(cfg.api.host)
        name = self._name("api")
        intake = self._registry.get("intake") or self._intake_endpoint()
        ledger = bool(self._database_url and cfg.storage.ledger)  # as `start` and `_start_missing` spawn it
        return spawn_plain(ApiActor, "api", name, cfg.ray_namespace, cfg, cfg, self._name("supervisor"),
                           intake, port, self._redis_url, self._database_url, ledger), name

    def _start_api(self, spawned: tuple[Any, str] | None = None) -> None:
        """The HTTP API, an actor of its own (an HTTP flood never shares the heartbeats' process); it
        reaches this supervisor by name. Fixed port, so Ray restarts it at the same address."""
        api, name = spawned or self._spawn_api()
        try:
            self._registry["api"] = ray.get(api.address.remote(), timeout=60)
        except Exception:
            ray.kill(api, no_restart=True)
            raise
        self._own("api", api, name)

    def _own(self, role: str, actor: Any, name: str) -> None:
        """A started child joins the table (and the checkpoint, for a restarted supervisor), with its
        process (node.liveness: its death is judged by it)."""
        self._adopt_child(role, actor, name)
        self._learn_process(role, actor)
        self._liveness.started(role, time.time_ns())
        self._checkpoint()

    def admin(self, action: str, body: dict) -> Any:
        """The HTTP admin actions (the API actor calls this over Ray)."""
        return self._admin(action, body)

    def kill(self, strategy_id: str | None = None, cancel_open: bool = False) -> Any:
        """The kill switch (the validator's); with `cancel_open`, then every group's leader cancels
        its orders not yet finished (of the strategy, or all): {"kill": ..., "canceled": {group: ...}}."""
        killed = self.call("validator", "kill", strategy_id)
        if not cancel_open:
            return killed
        canceled = {}
        for lane in list(self.lanes.values()):
            try:
                canceled[lane.name] = ray.get(self._actors["engine:" + lane.leader].cancel_open.remote(strategy_id),
                                              timeout=30)
            except Exception as exc:  # noqa: BLE001 - the kill holds; the operator sees which group failed
                canceled[lane.name] = {"error": type(exc).__name__ + ": " + str(exc).splitlines()[0][:200]}
        lifecycle(self._log, "kill_cancel_open", strategy_id=strategy_id or "*",
                  canceled=sum(int(v.get("canceled", 0)) for v in canceled.values()))
        return {"kill": killed, "canceled": canceled}

    def _admin(self, action: str, body: dict) -> Any:
        """The HTTP admin actions (see actors/api.py); KeyError / ValueError are the caller's mistakes."""
        strategy = body.get("strategy_id")
        if action == "kill":
            return self.kill(strategy, bool(body.get("cancel_open")))
        if action == "unkill":
            return self.call("validator", action, strategy)
        if action in ("pause", "resume"):
            return self.call("validator", action, body["strategy_id"])
        if action == "state":
            return self.call("validator", "set_state", body["state"], strategy)
        if action == "reset-breaker":
            return self.call("validator", "reset_breaker", body["name"])
        if action == "limits":  # {"changes": {"max_quantity": 500, ...}}: node.risk.controls.RUNTIME_LIMITS
            return self.call("validator", "set_limits", dict(body["changes"]))
        if action == "controls":
            return self.call("validator", "controls")
        if action == "mode":  # {"strategy_id", "mode", "force"?}: node.modes
            return self.call("validator", "set_mode", body["strategy_id"], body["mode"], bool(body.get("force")))
        if action == "modes":
            return self.call("validator", "modes_in_force")
        if action == "failover":
            return self.failover(body.get("to"), reason="manual", group=body.get("group"))
        if action == "failback":
            return self.failback(body.get("group"))
        if action == "broker-failover":
            return self.broker_failover(body.get("group"), body.get("to"))
        if action == "reconcile":
            return self.reconcile("manual")
        raise ValueError("unknown admin action " + repr(action))

    # ---------------------------------------------------------------- reconciliation (actors/reconciler.py)

    def _reconciles_at_start(self) -> bool:
        cfg = self._cfg
        return bool(self._database_url and cfg.storage.ledger and cfg.reconcile.enabled) and not self._ledger_degraded()

    def _start_reconciler(self, spawned: tuple[Any, str] | None = None) -> Any:
        """Start the reconciler (`spawned` beforehand, or now) and run the start-up reconciliation (the
        validator is not up yet, so its actions come back: the validator starts with them, before its
        intake opens)."""
        cfg = self._cfg
        if not (self._database_url and cfg.storage.ledger and cfg.reconcile.enabled):
            return None  # without the ledger PostgreSQL holds no book of this node's
        if self._ledger_degraded():
            if spawned is not None:
                ray.kill(spawned[0], no_restart=True)
            self._ledger_degraded_at_start = True
            # PostgreSQL is down: the node starts degraded and trades (the signal path does not need
            # it); the start-up run waits for PostgreSQL and then acts like any other run
            self._spawn_thread(self._reconcile_when_ledger_back, "reconcile-deferred")
            return None
        actor = self._spawn_reconciler(spawned)
        return ray.get(actor.reconcile.remote("startup", False), timeout=120)

    def _lift_failed_halts(self) -> None:
        """The start-up run compared clean: a RECONCILE_FAILED halt the control stream kept from the
        node's previous run (stopped while it could not read its books) is lifted, as the reconciler
        lifts its own at a clean run (node.reconcile_halts); an operator's state stays."""
        try:
            done = ray.get(self._actors["validator"].call.remote("lift_states", FAILED_BY), timeout=30)
        except Exception as exc:  # noqa: BLE001 - the reconciler's next clean run lifts it
            self._log.warning("start-up: RECONCILE_FAILED halts not looked at: %s", exc)
            return
        if done.get("lifted"):
            self._notice("start-up reconciliation clean: lifted the RECONCILE_FAILED halt of " + ", ".join(done["lifted"]))

    def _new_reconciler(self) -> tuple[Any, str]:
        cfg = self._cfg
        name = self._name("reconciler@" + str(time.time_ns()))
        return spawn_reconciler(name, cfg.ray_namespace, cfg, self._redis_url, self._database_url,
                                self._name("supervisor"), self._registry["publish"]), name

    def _spawn_reconciler(self, spawned: tuple[Any, str] | None = None) -> Any:
        actor, name = spawned or self._new_reconciler()
        try:
            ray.get(actor.start.remote(), timeout=120)
        except Exception:
            ray.kill(actor, no_restart=True)
            raise
        self._own("reconciler", actor, name)
        return actor

    def _ledger_degraded(self) -> bool:
        ledger = self._actors.get("ledger")
        if ledger is None:
            return False
        try:
            return bool(ray.get(ledger.stats.remote(), timeout=10).get("degraded"))
        except Exception:  # noqa: BLE001 - a ledger that does not answer is not writing
            return True

    def _reconcile_when_ledger_back(self) -> None:
        """The deferred start-up reconciliation: once the ledger writes to PostgreSQL again."""
        while not self._stopping.wait(1.0):
            if self._ledger_degraded():
                continue
            try:
                self._spawn_reconciler()
            except Exception:  # noqa: BLE001 - PostgreSQL went away again: wait for it once more
                continue
            self._reconcile_later("startup_deferred")
            return

    def broker_books(self) -> list:
        """Every broker account's book (one adapter per account), for the reconciler. An account none
        of whose adapters is in the table (being restarted: `restart_broker` takes the dead one out
        first) fails the call: a run must never take a missing book for an empty account."""
        refs: dict[str, Any] = {}
        for name, broker in self._brokers.items():
            actor = self._actors.get("broker:" + name)
            if actor is not None and broker.account_id not in refs:
                refs[broker.account_id] = actor.call.remote("book", broker.account_id)
        missing = sorted({b.account_id for b in self._brokers.values()} - set(refs))
        if missing:
            raise BrokerError("no live broker adapter for account " + ", ".join(missing) + " (restarting)",
                              Reason.VENUE_UNAVAILABLE, retriable=True)
        return ray.get(list(refs.values()), timeout=60)

    def broker_links(self) -> dict[str, int]:
        """Each broker adapter's link generation (grows on a reconnect to its broker), for the
        reconciler's run after a reconnect; an adapter that does not answer is left out."""
        refs = {name: actor.call.remote("link_generation") for name in self._brokers
                if (actor := self._actors.get("broker:" + name)) is not None}
        out: dict[str, int] = {}
        deadline = time.monotonic() + 5.0
        for name, ref in refs.items():
            try:
                out[name] = ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))
            except Exception:  # noqa: BLE001 - a broker away is the heartbeat's business
                continue
        return out

    def reconcile(self, trigger: str = "manual") -> dict:
        """One reconciliation now (`execnode reconcile`, `POST /admin/reconcile`): its summary."""
        actor = self._actors.get("reconciler")
        if actor is None:
            raise RuntimeError("no reconciler: it needs a database ([reconcile] enabled, DATABASE_URL)")
        return msgspec.to_builtins(ray.get(actor.reconcile.remote(trigger), timeout=120))

    def _respawn_reconciler(self) -> None:
        """A dead reconciler's replacement runs at once (trigger `restart`): it does not know whether a
        RECONCILE_FAILED halt of its predecessor's is in force, and a clean run lifts it
        (node.reconcile_halts); it waited for the next scheduled run (up to `reconcile_every_secs`)."""
        self._spawn_reconciler()
        self._reconcile_later("restart")

    def _reconcile_later(self, trigger: str) -> None:
        """After a failover or a broker move: a run in the background (never holds up the move)."""
        actor = self._actors.get("reconciler")
        if actor is not None and not self._stopping.is_set():
            actor.reconcile.remote(trigger)

    def _spawn_thread(self, target: Any, name: str, *args: Any) -> None:
        t = threading.Thread(target=target, name="supervisor-" + name, args=args, daemon=True)
        t.start()
        self._threads.append(t)

    def _name(self, role: str) -> str:
        return self._cfg.node_id + "." + role

    def _record(self, kind: str, event: dict) -> None:
        """Failovers, epoch grants and restarts to the log and the monitoring stream: queued, never
        blocks (a frozen store keeps them until it answers again; see actors/recorder.py)."""
        lifecycle(self._log, kind, **{k: v for k, v in event.items() if not isinstance(v, (dict, list))})
        self._recorder.record(kind, event)

    def _check_leaders_with_ray(self) -> None:
        """Ray's death notice, the second detector: a leader whose actor Ray reports dead (or
        restarting) is failed over even if a stray heartbeat was still in flight."""
        for lane in list(self.lanes.values()):
            leader = lane.leader
            actor = self._actors.get("engine:" + leader)
            if actor is None or _state(actor) != "dead":  # slow or stuck: the heartbeats' call
                continue
            # a live standby other than the leader itself: one Ray restarted is the heartbeat path's
            # to promote (see node.failover: Ray's notice was about the process that died)
            target = self._policy.ray_target(lane, time.time_ns())
            if target is None:
                continue
            try:
                with self._lock:  # still the leader once the lock is ours (a heartbeat failover may have won)
                    if lane.leader == leader and not self._stopping.is_set():
                        self.failover(to=target, reason=Detector.RAY, detected_ns=time.time_ns())
            except Exception:  # noqa: BLE001 - no standby yet: the heartbeat path retries
                pass

    def _watch_loop(self) -> None:
        """The validator, the ledger, the reconciler and the broker adapters: polled over Ray. A
        validator, ledger or reconciler is restarted on evidence of its death or when it has been hung
        far longer than a slow answer (node.liveness: a late answer alone never restarts it); the
        validator on the same address. A dead broker is handled as `_broker_died` says."""
        while not self._stopping.wait(self._watch_s):
            self._check_leaders_with_ray()
            validator = self._actors.get("validator")
            verdict = self._judge("validator", validator)
            if verdict in (Verdict.DEAD, Verdict.HUNG) and not self._stopping.is_set():
                try:
                    self.restart("validator", reason="died" if verdict == Verdict.DEAD else "hung", dead=validator)
                except Exception as exc:  # noqa: BLE001 - the dead handle stays in the table: next round
                    self._watch_failed("validator", exc)
            for name in self._brokers:
                actor = self._actors.get("broker:" + name)
                if actor is not None and _state(actor) == "dead":  # a slow one is the heartbeat's call
                    try:
                        self._broker_died(name, actor, "ray")
                    except Exception as exc:  # noqa: BLE001 - the dead handle stays in the table: next round
                        self._watch_failed("broker:" + name, exc)
            for role, spawn in (("ledger", self._start_ledger), ("reconciler", self._respawn_reconciler)):
                actor = self._actors.get(role)
                verdict = self._judge(role, actor)
                if verdict in (Verdict.DEAD, Verdict.HUNG) and not self._stopping.is_set():
                    try:
                        self._restart_service(role, actor, spawn, "died" if verdict == Verdict.DEAD else "hung")
                    except Exception as exc:  # noqa: BLE001 - kept for stats; tried again next round
                        self._watch_failed(role, exc)

    def _watch_failed(self, role: str, exc: BaseException) -> None:
        """A restart the watch tried failed (its new actor did not start: Redis too slow to answer its
        start-up reads, a port not free yet): counted, the newest kept for stats, logged; the dead
        actor is still in the table, so the next round tries again (within the restart intensity)."""
        self.watch_errors += 1
        self.last_watch_error = role + ": " + _brief(exc)
        self._log.warning("restart of %s failed, tried again: %s", role, self.last_watch_error)

    def _judge(self, role: str, actor: Any) -> Verdict | None:
        """The liveness verdict on the child playing `role` (None when there is none): its answer to
        `alive()`, and whether its process still exists when it runs on this machine."""
        if actor is None:
            return None
        return self._liveness.judge(role, _answer(actor), self._process(role), time.time_ns())

    def _process(self, role: str) -> Process:
        """Does the process last learned to play `role` still exist (`node.pids`), when it runs on this machine?"""
        known = self._procs.get(role)
        if known is None or not self._here or known[0] != self._here:
            return Process.UNKNOWN
        return Process.ALIVE if pid_alive(known[1]) else Process.GONE

    def _learn_process(self, role: str, actor: Any) -> None:
        """Ask a child that just started (or was promoted) where its process runs (node.liveness)."""
        try:
            node_id, pid = ray.get(actor.process.remote(), timeout=5)
            self._procs[role] = (str(node_id), int(pid))
        except Exception:  # noqa: BLE001 - unknown: judged on its answers alone
            self._procs.pop(role, None)

    def _restart_service(self, role: str, dead: Any, spawn: Callable[[], Any], reason: str = "died") -> None:
        """A dead ledger or reconciler comes back, within the restart intensity. The ledger resumes its
        consumer group (what it had not acknowledged is read again, its inserts are idempotent); the
        reconciler holds no state of its own (its next run reads both books)."""
        t0 = time.perf_counter()
        with self._restart_lock:
            if self._stopping.is_set() or self._actors.get(role) is not dead or not self._may_restart(role):
                return
            self._notice(role + " " + reason)
            self._actors.pop(role, None)
            ray.kill(dead, no_restart=True)
            with _kept_on_failure(self._actors, role, dead):
                spawn()
            event = {"role": role, "reason": reason, "took_ms": round((time.perf_counter() - t0) * 1e3, 1)}
            self.restarts.append(event)
            self._record("restart", event)
            self._notice(role + " back")

    def _start_ledger(self) -> None:
        self._await_started([self._spawn_ledger()])

    def _spawn_ledger(self) -> _Spawned:
        cfg = self._cfg
        name = self._name("ledger@" + str(time.time_ns()))
        ledger = spawn_ledger(name, cfg.ray_namespace, cfg.storage, self._redis_url, self._database_url,
                              tuning=cfg.tuning, node_id=cfg.node_id)
        return _Spawned(ledger, ledger.start.remote(), lambda _: self._own("ledger", ledger, name))

    def _await_started(self, batch: list[_Spawned], timeout_s: float = 120.0) -> None:
        """Wait on the ready calls of children spawned together (their processes start at once), then
        each joins the table in the batch's order. If one fails, none joins: every child of the batch
        is killed and the first failure raised (as one child's failed start was before)."""
        try:
            answers = ray.get([child.ready for child in batch], timeout=timeout_s)
        except Exception:
            for child in batch:
                ray.kill(child.actor, no_restart=True)
            raise
        for child, answer in zip(batch, answers):
            child.started(answer)

    def _may_restart(self, role: str) -> bool:
        """Within the restart intensity; the first refusal is recorded (the node is then unhealthy)."""
        if self._budget.allow(role, time.time_ns()):
            return True
        if role not in self._gave_up_recorded:
            self._gave_up_recorded.add(role)
            self._notice(role + " died too often (" + str(self._budget.max_restarts) + " restarts within "
                         + str(self._budget.window_ns // 1_000_000_000) + " s): given up")
            self._record("restart_gave_up", {"role": role, "max_restarts": self._budget.max_restarts,
                                             "window_s": self._budget.window_ns // 1_000_000_000})
        return False

    def _notice(self, line: str) -> None:
        """One line for the operator (`execnode up` prints it); the newest 256 are kept."""
        self._notice_seq += 1
        self._notices.append((self._notice_seq, line))
        del self._notices[:-256]

    def notices(self, after: int = 0) -> dict:
        """The lines after seq `after`, and `health()`: what `execnode up` polls. Takes no lock."""
        return {"notices": [(seq, line) for seq, line in list(self._notices) if seq > after], "health": self.health()}

    def groups(self) -> dict[str, dict]:
        """Each group's epoch, leader, broker and the engine a promotion under way makes the leader
        (`promoting`, and `promoting_pid` once that engine said which process of this machine it runs
        in: the one watched for its death). Takes no lock: it answers during a failover."""
        return {name: lane.view() for name, lane in dict(self.lanes).items()}

    def health(self) -> dict:
        """`ok` false once a role died more often than the restart intensity allows (given up):
        `execnode up` exits non-zero on it. Takes no lock."""
        gave_up = sorted(self._budget.gave_up)
        return {"ok": not gave_up, "gave_up": gave_up}


class _BrokerPings:
    """The supervisor's heartbeat to each broker adapter: a Heartbeat every interval on a DEALER of
    its own; `exchange` sends when due and returns the brokers that answered since last time."""

    def __init__(self, registry: dict[str, str], names: list[str], interval_ms: int) -> None:
        self._interval_ns = interval_ms * 1_000_000
        self._next_ns = 0
        self._seq = 0
        self._socks: dict[str, zmq.Socket] = {}
        ctx = zmq.Context.instance()
        for name in names:
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, 16)  # pings to a dead broker must not pile up
            sock.connect(registry["broker:" + name])
            self._socks[name] = sock

    def exchange(self, now: int) -> list[str]:
        answered = []
        for name, sock in self._socks.items():
            got = False
            while True:
                try:
                    sock.recv(zmq.NOBLOCK)
                    got = True
                except zmq.Again:
                    break
            if got:
                answered.append(name)
        if now >= self._next_ns:
            self._next_ns = now + self._interval_ns
            self._seq += 1
            ping = encode(Heartbeat("supervisor", 0, self._seq, now))
            for sock in self._socks.values():
                try:
                    sock.send(ping, zmq.NOBLOCK)
                except zmq.Again:
                    pass
        return answered

    def close(self) -> None:
        for sock in self._socks.values():
            sock.close(0)


class _Spawned(NamedTuple):
    """A child spawned, its ready call sent: `started(answer)` puts it in the table."""

    actor: Any
    ready: Any  # ray.ObjectRef of its start (or endpoints) call
    started: Callable[[Any], None]


class _Stopwatch:
    """Milliseconds per start-up phase into `took` (each since the previous mark; `total` since the first)."""

    def __init__(self, took: dict[str, float]) -> None:
        self._took = took
        self._t0 = self._last = time.perf_counter()

    def __call__(self, phase: str, since_start: bool = False) -> None:
        now = time.perf_counter()
        self._took[phase] = round((now - (self._t0 if since_start else self._last)) * 1e3, 1)
        self._last = now


@contextmanager
def _kept_on_failure(actors: dict[str, Any], role: str, dead: Any) -> Iterator[None]:
    """Around the start of `role`'s replacement: if it fails, the handle it replaces (dead, or just
    killed) goes back into the table, so the watch finds it dead and tries again. Without it the role
    left the table for good: the watch polls only the actors in it (a validator that failed one
    restart under load stayed down until the supervisor itself restarted)."""
    try:
        yield
    except BaseException:
        if dead is not None and role not in actors:
            actors[role] = dead
        raise


def _brief(exc: BaseException) -> str:
    lines = str(exc).splitlines()
    return type(exc).__name__ + ": " + (lines[0][:200] if lines else "")


def _answer(actor: Any, timeout_s: float = 2.0) -> Answer:
    """One `alive()` call (node.liveness.Answer): only Ray's death notice or the actor's own "no" is
    evidence; no answer in time, or Ray unable to reach it for now, is only late."""
    try:
        return Answer.YES if ray.get(actor.alive.remote(), timeout=timeout_s) else Answer.NO
    except (ray.exceptions.GetTimeoutError, ray.exceptions.ActorUnavailableError):
        return Answer.LATE
    except Exception:  # noqa: BLE001 - ActorDiedError, ...: gone
        return Answer.DIED


def _state(actor: Any, timeout_s: float = 2.0) -> str:
    """"up", "dead" (Ray says the actor died) or "slow" (no answer in time: maybe a loaded machine)."""
    try:
        return "up" if ray.get(actor.alive.remote(), timeout=timeout_s) else "dead"
    except ray.exceptions.GetTimeoutError:
        return "slow"
    except Exception:  # noqa: BLE001 - ActorDiedError, ActorUnavailableError, ...: gone
        return "dead"


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


def _this_node() -> str:
    """The Ray node id of this process ("" outside Ray): a child's pid is checked only on the same node."""
    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - no Ray (a unit test builds the class directly)
        return ""


def _reconstructed() -> bool:
    """Is this constructor Ray's restart of a supervisor that died (False outside an actor)?"""
    try:
        return bool(ray.get_runtime_context().was_current_actor_reconstructed)
    except Exception:  # noqa: BLE001 - not in an actor (a unit test builds the class directly)
        return False


def _named_all(names: dict[str, str], namespace: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """role -> the live actor of each name (`_named`, asked all at once, one deadline for all)."""
    handles = {}
    for role, name in names.items():
        try:
            handles[role] = ray.get_actor(name, namespace=namespace)
        except ValueError:
            continue
    refs = {role: actor.alive.remote() for role, actor in handles.items()}
    deadline = time.monotonic() + timeout_s
    found = {}
    for role, ref in refs.items():
        try:
            if not ray.get(ref, timeout=max(0.0, deadline - time.monotonic())):
                continue  # its service stopped
        except ray.exceptions.GetTimeoutError:
            pass  # slow, or restarted by Ray: it is there
        except Exception:  # noqa: BLE001 - dead
            continue
        found[role] = handles[role]
    return found


def _named(name: str, namespace: str) -> Any:
    """The live actor named `name`, or None."""
    try:
        actor = ray.get_actor(name, namespace=namespace)
    except ValueError:
        return None
    return actor if _state(actor, timeout_s=5.0) != "dead" else None


def _stop_and_kill(actor: Any) -> None:
    try:
        ray.get(actor.stop.remote(), timeout=10)
    except Exception:  # noqa: BLE001 - stopping: the kill below ends it anyway
        pass
    ray.kill(actor, no_restart=True)
