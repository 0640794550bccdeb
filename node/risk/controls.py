"""Operator controls as typed, durable events, and the state they fold into. Pure: no I/O, no clock.

Every control a trader or operator sets at run time (kill switch node-wide or per strategy, pause,
trading state ACTIVE / REDUCING / HALTED, limits, covariance) is one `ControlEvent` on the control
stream (`execution.controls`, field b"c", msgpack). The validator appends it and applies it; a
restarted validator folds the stream (or a `ControlSnapshot` of the fold plus the stream's tail) into
a `ControlState` and applies that to a fresh `PreTradeRisk` before it opens its intake. The ledger
drains the same stream into PostgreSQL: `strategy_state` (one row per strategy, `*` = node-wide,
the switches *after* the event, carried in `ControlEvent.after`) and `control_events` (the audit).

Limits changed at run time are the subset of `RiskLimits` that the pre-trade kernels read from the
limits vector (`RUNTIME_LIMITS`); a change is validated by building the whole `RiskLimits` again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from node.trading_mode import TradingMode
from node.risk.config import RiskLimits, TradingState

if TYPE_CHECKING:
    from node.risk.engine import PreTradeRisk

CONTROLS_FIELD = b"c"
NODE = "*"  # the strategy_state row of the node-wide switches

#: Limits a running node may change (each is read from the limits vector on every signal).
RUNTIME_LIMITS = frozenset({
    "max_quantity", "max_notional_usd", "max_position_pct", "max_symbol_long_usd", "max_symbol_short_usd",
    "max_strategy_long_usd", "max_strategy_short_usd", "max_strategy_exposure_usd", "max_gross_exposure_usd",
    "max_net_exposure_usd", "max_group_exposure_usd", "max_incremental_var_usd2", "price_collar_bps",
    "price_collar_ticks", "tick_size_usd", "default_max_slippage", "max_slippage_cap", "strategy_orders_per_sec",
    "strategy_burst", "node_orders_per_sec", "node_burst", "duplicate_window_ms", "max_daily_loss_usd",
    "max_drawdown_usd", "breaker_probe_orders",
})  # fmt: skip


class ControlError(ValueError):
    """A control that cannot be applied (unknown limit, a value out of range); `reason` is a code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason + ": " + detail)
        self.reason = reason
        self.detail = detail

    def __reduce__(self) -> tuple:  # crosses Ray (pickle) intact
        return (ControlError, (self.reason, self.detail))


# ---------------------------------------------------------------- the controls (commands)


class Kill(msgspec.Struct, frozen=True, tag="kill"):
    strategy_id: str | None = None  # None: node-wide


class Unkill(msgspec.Struct, frozen=True, tag="unkill"):
    strategy_id: str | None = None


class Pause(msgspec.Struct, frozen=True, tag="pause"):
    strategy_id: str


class Resume(msgspec.Struct, frozen=True, tag="resume"):
    strategy_id: str


class SetState(msgspec.Struct, frozen=True, tag="state"):
    state: TradingState
    strategy_id: str | None = None
    by: str = ""  # who set it: "" an operator; "reconciler:<reason>" the reconciler (node.reconcile_halts)


class SetLimits(msgspec.Struct, frozen=True, tag="limits"):
    changes: dict[str, float]


class LoadCovariance(msgspec.Struct, frozen=True, tag="covariance"):
    symbols: list[str]
    matrix: list[list[float]]


class SetMode(msgspec.Struct, frozen=True, tag="mode"):
    """A strategy's paper / shadow / canary / live mode (node.modes)."""

    strategy_id: str
    mode: TradingMode


Control = Kill | Unkill | Pause | Resume | SetState | SetLimits | LoadCovariance | SetMode


class Switches(msgspec.Struct, kw_only=True):
    """One strategy's (or the node's) switches."""

    killed: bool = False
    paused: bool = False
    state: TradingState = TradingState.ACTIVE
    state_by: str = ""  # the `by` of the SetState that set `state`


class ControlEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One control as recorded: what was asked, when, and the target's switches after it."""

    control: Control
    ts_ns: int
    target: str = NODE  # strategy id or NODE
    after: Switches | None = None  # None for limits / covariance (node-wide, not switches)
    node_id: str = ""  # the node that recorded it (nodes sharing a Redis never fold each other's)


class ControlState(msgspec.Struct, kw_only=True):
    """The fold of every control so far: what a restarted validator applies."""

    node: Switches = msgspec.field(default_factory=Switches)
    strategies: dict[str, Switches] = {}
    limits: dict[str, float] = {}
    covariance: list[LoadCovariance] = []  # in order; a load covering an earlier one's symbols replaces it
    modes: dict[str, TradingMode] = {}  # strategy -> mode set at run time (node.modes)

    def switches(self, target: str) -> Switches:
        if target == NODE:
            return self.node
        sw = self.strategies.get(target)
        if sw is None:
            sw = self.strategies[target] = Switches()
        return sw

    def fold(self, ctl: Control) -> Switches | None:
        """Apply one control to the fold; returns the target's switches after it (None: node-wide
        limits or covariance)."""
        if isinstance(ctl, (Kill, Unkill)):
            sw = self.switches(_target(ctl.strategy_id))
            sw.killed = isinstance(ctl, Kill)
        elif isinstance(ctl, (Pause, Resume)):
            sw = self.switches(ctl.strategy_id)
            sw.paused = isinstance(ctl, Pause)
        elif isinstance(ctl, SetState):
            sw = self.switches(_target(ctl.strategy_id))
            sw.state = ctl.state
            sw.state_by = ctl.by
        elif isinstance(ctl, SetMode):
            self.modes[ctl.strategy_id] = ctl.mode
            sw = self.switches(ctl.strategy_id)
        elif isinstance(ctl, SetLimits):
            self.limits.update(ctl.changes)
            return None
        else:
            covered = set(ctl.symbols)
            self.covariance = [c for c in self.covariance if not set(c.symbols) <= covered] + [ctl]
            return None
        return msgspec.structs.replace(sw)

    def placed_by(self, by: str) -> list[str | None]:
        """The targets (None: the node) whose trading state is not ACTIVE and was set by `by`, and
        by nothing since: what `by` may lift (an operator's later state is never anyone else's)."""
        out: list[str | None] = [None] if self.node.state is not TradingState.ACTIVE and self.node.state_by == by else []
        out += [t for t, sw in self.strategies.items() if sw.state is not TradingState.ACTIVE and sw.state_by == by]
        return out

    def apply_to(self, risk: "PreTradeRisk") -> None:
        """Set every switch, limit and covariance block of the fold on `risk` (a fresh one)."""
        if self.limits:
            risk.set_limits(self.limits)
        for cov in self.covariance:
            risk.load_covariance(cov.symbols, cov.matrix)
        for target, sw in [(NODE, self.node), *self.strategies.items()]:
            sid = None if target == NODE else target
            if sw.killed:
                risk.kill(sid)
            if sw.state is not TradingState.ACTIVE:
                risk.set_state(sw.state, sid)
            if sw.paused and sid is not None:
                risk.pause(sid)


class ControlSnapshot(msgspec.Struct, kw_only=True):
    """The fold as of stream entry `last_id` (a restart reads it, then the entries after it)."""

    last_id: str = "0"
    state: ControlState = msgspec.field(default_factory=ControlState)


def _target(strategy_id: str | None) -> str:
    return NODE if strategy_id is None else strategy_id


def target_of(ctl: Control) -> str:
    return _target(getattr(ctl, "strategy_id", None))


def checked_limits(base: RiskLimits, changes: dict[str, float]) -> RiskLimits:
    """`base` with `changes`, validated as a whole; raises `ControlError` (UNKNOWN_LIMIT, BAD_LIMIT)."""
    unknown = sorted(set(changes) - RUNTIME_LIMITS)
    if unknown:
        raise ControlError("UNKNOWN_LIMIT", "not a limit that can change at run time: " + ", ".join(unknown))
    merged = msgspec.structs.asdict(base)
    for name, value in changes.items():
        cur = merged[name]
        merged[name] = int(value) if isinstance(cur, int) and float(value).is_integer() else value
    try:
        return msgspec.convert(merged, RiskLimits)
    except msgspec.ValidationError as exc:
        raise ControlError("BAD_LIMIT", str(exc)) from exc


def checked_control(ctl: Control, base: RiskLimits) -> Control:
    """Refuse a control that could not be applied, before it is recorded (raises `ControlError`)."""
    if isinstance(ctl, SetLimits):
        checked_limits(base, ctl.changes)
    elif isinstance(ctl, LoadCovariance):
        n = len(ctl.symbols)
        if len(set(ctl.symbols)) != n or len(ctl.matrix) != n or any(len(row) != n for row in ctl.matrix):
            raise ControlError("BAD_COVARIANCE", "need distinct symbols and a len(symbols) x len(symbols) matrix")
    elif isinstance(ctl, (Pause, Resume, SetMode)) and not ctl.strategy_id:
        raise ControlError("BAD_STRATEGY", "pause/resume/mode need a strategy id")
    return ctl


_event_encoder = msgspec.msgpack.Encoder()
_event_decoder = msgspec.msgpack.Decoder(ControlEvent)
_snapshot_decoder = msgspec.msgpack.Decoder(ControlSnapshot)


def encode_event(event: ControlEvent) -> bytes:
    return _event_encoder.encode(event)


def decode_event(raw: bytes) -> ControlEvent:
    """Raises msgspec.DecodeError / ValidationError on bytes that are not a control event."""
    return _event_decoder.decode(raw)


def encode_snapshot(snap: ControlSnapshot) -> bytes:
    return _event_encoder.encode(snap)


def decode_snapshot(raw: bytes) -> ControlSnapshot:
    return _snapshot_decoder.decode(raw)
