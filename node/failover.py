"""The failover policy: pure decisions over the lane table, apart from the actors that act on them.

The supervisor feeds it what it observes (engines' heartbeats, brokers' answers to pings, Ray's death
notices, the store's health) with the time it observed them, and asks it what to do: is a group's
leader dead, which standby to promote, which broker to move to, when to try again after a failed
promotion. Every epoch it grants is an `EpochGrant` kept in order (`grants`), whatever the outcome of
the promotion or move it was granted for, so the supervisor can record each one.

The clock is injected (every method takes `now` in ns) so every decision is unit-tested without Ray.

Races the chaos tests found, and the rule that settles each:
- A lone engine killed -9 is restarted by Ray and beats again as a standby while Ray's watch may still
  report the killed incarnation dead: Ray's death notice never promotes the leader itself back
  (`ray_target`); the heartbeat path, which saw the leader go silent, promotes the new process.
- A leader Ray restarted beats as a standby again, cold, beside a warm standby: whichever path acts, the
  warm standby is promoted first whatever the priority (`best_standby`); the restarted process only
  when no other engine beats.
- A frozen store (Redis) blocks every engine's loop, so every leader falls silent at once, and each
  promotion hangs on the same store: while the store is down a silent leader is not failed over on
  heartbeats alone (only on Ray's death notice), and silence is judged only over time the store was up.
- A promotion that fails is retried with backoff (one heartbeat interval, doubling, capped), so a store
  outage cannot spin the epoch.
- A leader silent for a few heartbeats whose process is still there is slow (a loaded host, a pause),
  not dead: it is failed over only after `alive_silence_ns` (a frozen or stuck leader still goes). One
  whose process is gone, or runs elsewhere, goes after `heartbeat_dead_ns`. On a loaded 2-core host
  three missed 20 ms beats failed a healthy leader over several times a minute (`execnode up`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import msgspec

from node.config import BrokerConfig, EngineGroupConfig
from node.control import Role

__all__ = ["Detector", "EpochGrant", "FailoverPolicy", "GrantKind", "Lane", "LaneState", "Role"]


class Detector(StrEnum):
    """Why a failover or broker move happened (the `reason` of its record)."""

    HEARTBEAT = "heartbeat"
    RAY = "ray"
    RESUME = "resume"  # a restarted supervisor found the leader's process gone (node.liveness.resume_verdict)
    EXIT = "exit"  # the leader's process on this machine exited (node.exit_watch)
    MANUAL = "manual"


class GrantKind(StrEnum):
    PROMOTE = "promote"  # a new leader for the group
    MOVE = "move"  # the group onto another broker


class EpochGrant(msgspec.Struct, frozen=True, kw_only=True):
    """One epoch the supervisor granted, recorded before the call that uses it (whatever its outcome)."""

    group: str
    epoch: int
    kind: GrantKind
    to: str  # the engine promoted, or the broker moved to
    reason: str
    granted_ns: int


@dataclass
class Lane:
    """One engine group's live state: its engines and brokers by priority, leader, epoch, broker."""

    name: str
    engines: list[str]
    brokers: list[str]
    accounts: dict[str, str]
    epoch: int = 1
    leader: str = ""
    broker: str = ""  # the active broker
    leader_seen_ns: int = 0
    failed_attempts: int = 0  # promotions in a row that failed
    promoted_ns: int = 0  # when its leader was last promoted
    retry_at_ns: int = 0  # no new attempt before this
    promoting: str = ""  # the engine a promotion under way is making the leader ("" = none)
    promoting_pid: int = 0  # its process on the supervisor's machine, once it said (watched for its death)

    def __post_init__(self) -> None:
        self.leader = self.leader or self.engines[0]
        self.broker = self.broker or self.brokers[0]

    @classmethod
    def of(cls, group: EngineGroupConfig, brokers: list[BrokerConfig]) -> "Lane":
        return cls(group.name, [e.name for e in group.engines], [b.name for b in brokers],
                   {b.name: b.account_id for b in brokers})

    def view(self) -> dict:
        return {"epoch": self.epoch, "leader": self.leader, "broker": self.broker, "promoting": self.promoting,
                "promoting_pid": self.promoting_pid, "engines": list(self.engines), "brokers": list(self.brokers)}


class LaneState(msgspec.Struct, frozen=True, kw_only=True):
    """A lane's checkpoint: what a restarted supervisor reads back."""

    name: str
    epoch: int
    leader: str
    broker: str


@dataclass
class _Beat:
    seen_ns: int
    role: str
    epoch: int


@dataclass
class FailoverPolicy:
    """Liveness verdicts and failover decisions for every lane (see the module docstring)."""

    lanes: dict[str, Lane]
    heartbeat_interval_ns: int
    heartbeat_dead_ns: int
    broker_dead_ns: int
    store_dead_ns: int = 250_000_000
    #: a leader promoted less than `settle_ns` ago counts as silent only after `settle_factor` times the
    #: usual silence: on a loaded host its first beats come late, and without this two engines failed
    #: each other over back and forth (epoch 2 -> 16 in a minute, tests/integration/test_cli_operate.py)
    settle_ns: int = 1_000_000_000
    settle_factor: int = 4
    #: a silent leader whose process still exists on this machine is failed over only after this long
    alive_silence_ns: int = 1_000_000_000
    retry_cap_ns: int = 2_000_000_000
    grants: list[EpochGrant] = field(default_factory=list)
    _beats: dict[str, _Beat] = field(default_factory=dict)
    _broker_seen: dict[str, int] = field(default_factory=dict)
    _store_ok_ns: int = 0  # the store's last good answer
    _store_back_ns: int = 0  # when it answered again after an outage
    _listening_since_ns: int = 0

    # ------------------------------------------------------------ observations

    def listening(self, now: int, grace_ns: int = 0) -> None:
        """The detectors start (or start again): silence is judged only from `now + grace_ns` on. A
        restarted supervisor gives a grace (`settle_ns`): the engines' heartbeat sockets and its own
        broker pings reconnect to its sockets only after ZeroMQ's reconnect interval (100 ms), and
        without it a bench run saw a healthy leader failed over right after each supervisor restart."""
        self._listening_since_ns = now + grace_ns
        self._store_ok_ns = now
        for lane in self.lanes.values():
            lane.leader_seen_ns = max(lane.leader_seen_ns, now)
        for name in {b for lane in self.lanes.values() for b in lane.brokers}:
            self._broker_seen[name] = max(self._broker_seen.get(name, 0), now)

    def on_beat(self, engine: str, role: str, epoch: int, now: int) -> None:
        self._beats[engine] = _Beat(now, role, epoch)
        for lane in self.lanes.values():
            # the leader leading (its epoch may lag the lane's while a promotion is on its way)
            if engine == lane.leader and role == Role.LEADER:
                lane.leader_seen_ns = now

    def stale_leader(self, engine: str, role: str, epoch: int) -> bool:
        """`engine` beats as the leader of an epoch its group has moved past while another engine
        leads it: a leader failed over while it was only slow, or one Ray restarted with its first
        wiring (leader at its old epoch). Its sends are fenced by the epoch all the same; it is told
        to step down so that what it says of itself is true. A group's own leader is never stale
        (during a broker move its epoch lags the lane's until it is told the new one)."""
        if role != Role.LEADER:
            return False
        for lane in self.lanes.values():
            if engine in lane.engines:
                return engine != lane.leader and epoch < lane.epoch
        return False

    def on_broker_answer(self, broker: str, now: int) -> None:
        self._broker_seen[broker] = now

    def on_store(self, ok: bool, now: int) -> None:
        """The store's health probe: `ok` when it answered in time."""
        if ok:
            if not self.store_up(now):
                self._store_back_ns = now
            self._store_ok_ns = now

    # ------------------------------------------------------------ verdicts

    def store_up(self, now: int) -> bool:
        return now - self._store_ok_ns <= self.store_dead_ns

    def leader_silent(self, lane: Lane, now: int, process_alive: bool = False) -> bool:
        """The leader has not beaten as a leader for `heartbeat_dead_ns` of time the detectors were
        listening and the store was up (a frozen store stalls every loop: that is not a death); for
        `alive_silence_ns` when its process is known to be still there (`process_alive`)."""
        if not self.store_up(now):
            return False
        since = max(lane.leader_seen_ns, self._listening_since_ns, self._store_back_ns)
        settling = lane.promoted_ns and now - lane.promoted_ns < self.settle_ns
        limit = self.heartbeat_dead_ns * (self.settle_factor if settling else 1)
        return now - since > (max(limit, self.alive_silence_ns) if process_alive else limit)

    def broker_silent(self, broker: str, now: int) -> int:
        """How long (ns) broker `broker` has been silent beyond its limit, else 0."""
        silent = now - max(self._broker_seen.get(broker, 0), self._listening_since_ns)
        return silent if silent > self.broker_dead_ns else 0

    def broker_seen_ns(self, broker: str) -> int:
        return self._broker_seen.get(broker, 0)

    def broker_dead(self, broker: str, now: int, ray_dead: bool, slow_factor: int = 4,
                    venue_inside: bool = False) -> bool:
        """Is a broker whose pings went unanswered dead? Silent past `broker_dead_ns` and Ray says its
        process died, or silent `slow_factor` times as long (a process that still answers Ray is only
        slow, a loaded machine, or stuck). An answer meanwhile clears it. A broker whose venue lives
        inside it (`BrokerConfig.venue_inside`) is dead only when Ray says so: its replacement would
        start on an empty venue (a busy paper broker, slow to answer under a re-drive burst and the
        reconciler's book call on a loaded host, was replaced and lost every order)."""
        silent = now - self._broker_seen.get(broker, 0)
        if silent <= self.broker_dead_ns:
            return False
        return ray_dead or (not venue_inside and silent > slow_factor * self.broker_dead_ns)

    def may_attempt(self, lane: Lane, now: int) -> bool:
        """No retry before the backoff after failed promotions has passed."""
        return now >= lane.retry_at_ns

    # ------------------------------------------------------------ decisions

    def best_standby(self, lane: Lane, exclude: str, now: int) -> str | None:
        """The first engine by priority that beats, other than `exclude` (the failed leader); `exclude`
        itself only when no other one beats and it beats as a standby again (Ray brought it back). A
        standby that was warm before the death goes before the process Ray just restarted, whatever
        their priority: the restarted one starts cold, and a hot standby is what the group is for (a
        frozen-then-killed leader Ray restarted within the watch's look was promoted back over a warm
        Nautilus standby: tests/integration/test_nautilus_standby_amends.py failed so 3 runs in 4)."""
        back = None
        for engine in lane.engines:
            beat = self._beats.get(engine)
            if beat is None or now - beat.seen_ns > self.heartbeat_dead_ns:
                continue
            if engine == exclude:
                if beat.role == Role.STANDBY:
                    back = engine
                continue
            return engine
        return back

    def heartbeat_failover_due(self, lane: Lane, leader: str, now: int, process_alive: bool = False) -> bool:
        """Checked again when acting on a silent leader: still that leader, still silent, and a live
        standby to promote. With none yet (a lone engine Ray is restarting) no epoch is granted and the
        next look is a beat later."""
        if lane.leader != leader or not self.leader_silent(lane, now, process_alive):
            return False
        if self.best_standby(lane, exclude=leader, now=now) is None:
            self.nothing_to_promote(lane, now)
            return False
        return True

    def ray_target(self, lane: Lane, now: int) -> str | None:
        """Whom Ray's death notice of the leader may promote: a live standby other than the leader
        itself. A leader Ray has already brought back is left to the heartbeat path (Ray's notice was
        about the process that died)."""
        target = self.best_standby(lane, exclude=lane.leader, now=now)
        return None if target == lane.leader else target

    def next_broker(self, lane: Lane, exclude: str, now: int, same_account_only: bool = False) -> str | None:
        """The first live broker by priority other than `exclude`; with `same_account_only`, only one
        in front of `exclude`'s account (for a leader that cannot strand what the lost one held)."""
        for name in lane.brokers:
            if name == exclude or now - self._broker_seen.get(name, 0) > self.broker_dead_ns:
                continue
            if same_account_only and lane.accounts.get(name) != lane.accounts.get(exclude):
                continue
            return name
        return None

    # ------------------------------------------------------------ changes

    def grant(self, lane: Lane, kind: GrantKind, to: str, reason: str, now: int) -> EpochGrant:
        """A new epoch for the lane, recorded here before anyone uses it."""
        lane.epoch += 1
        grant = EpochGrant(group=lane.name, epoch=lane.epoch, kind=kind, to=to, reason=reason, granted_ns=now)
        self.grants.append(grant)
        return grant

    def promoted(self, lane: Lane, engine: str, now: int) -> None:
        lane.leader = engine
        lane.leader_seen_ns = now
        lane.promoted_ns = now
        lane.failed_attempts = 0
        lane.retry_at_ns = 0

    def nothing_to_promote(self, lane: Lane, now: int) -> None:
        """No live standby yet (a lone engine Ray is restarting): look again a beat later, no grant."""
        lane.retry_at_ns = now + self.heartbeat_interval_ns

    def promotion_failed(self, lane: Lane, now: int) -> int:
        """Back off before the next attempt: one beat interval, doubling, capped. Returns the wait (ns)."""
        wait = min(self.heartbeat_interval_ns << min(lane.failed_attempts, 20), self.retry_cap_ns)
        lane.failed_attempts += 1
        lane.retry_at_ns = now + wait
        return wait

    def moved(self, lane: Lane, broker: str, now: int) -> None:
        lane.broker = broker
        lane.leader_seen_ns = now

    def checkpoint(self) -> list[LaneState]:
        return [LaneState(name=lane.name, epoch=lane.epoch, leader=lane.leader, broker=lane.broker)
                for lane in self.lanes.values()]

    def restore(self, saved: list[LaneState]) -> None:
        """A restarted supervisor carries on: each lane's epoch never goes back, its leader and broker
        are the saved ones when still configured."""
        for state in saved:
            lane = self.lanes.get(state.name)
            if lane is None:
                continue
            lane.epoch = max(lane.epoch, state.epoch)
            if state.leader in lane.engines:
                lane.leader = state.leader
            if state.broker in lane.brokers:
                lane.broker = state.broker

    def adopt(self, lane: Lane, engines: dict[str, tuple[str, int]], margin: int = 1) -> None:
        """After `restore`, the engines' own word (name -> (role, epoch), from their stats) wins over a
        checkpoint that may lag: the lane's epoch is the highest any engine holds or the checkpoint
        says, plus `margin` (a grant made just before the supervisor died, whose checkpoint was never
        written, may be on its way to an engine: the next grant must be above it too); the leader is
        the engine leading under the highest epoch, if any leads."""
        engines = {name: view for name, view in engines.items() if name in lane.engines}
        lane.epoch = max([lane.epoch] + [epoch for _, epoch in engines.values()]) + margin
        leading = [(epoch, name) for name, (role, epoch) in engines.items() if role == Role.LEADER]
        if leading:
            lane.leader = max(leading)[1]


@dataclass
class RestartBudget:
    """Restart intensity (OTP's): at most `max_restarts` restarts of one role within `window_ns`; past
    that the supervisor gives the role up (records it, reports the node unhealthy, `execnode up` exits
    non-zero) instead of restarting in a loop."""

    max_restarts: int = 5
    window_ns: int = 60_000_000_000
    _history: dict[str, list[int]] = field(default_factory=dict)
    gave_up: set[str] = field(default_factory=set)

    def seed(self, role: str, history: list[int]) -> None:
        """The restarts of `role` a previous process counted (the supervisor's own, from its checkpoint)."""
        self._history[role] = list(history)[-self.max_restarts:]

    def history(self, role: str) -> list[int]:
        return list(self._history.get(role, []))

    def allow(self, role: str, now: int) -> bool:
        """May `role` be restarted now? Counts the restart when it may; gives the role up when not."""
        if role in self.gave_up:
            return False
        recent = [t for t in self._history.get(role, []) if now - t < self.window_ns]
        if len(recent) >= self.max_restarts:
            self.gave_up.add(role)
            self._history[role] = recent
            return False
        recent.append(now)
        self._history[role] = recent
        return True
