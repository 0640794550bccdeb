"""Paper, shadow, canary and live per strategy: which route a signal takes (pure logic, no I/O).

A strategy named in `[[modes]]` has two routes, each an engine group: `paper_group` and
`live_group`. Its mode says where a signal goes:

| mode | where | stamp |
|---|---|---|
| paper | the paper group only | PAPER |
| shadow | the live group; a copy at the paper group, kept apart (below) | SHADOW |
| canary | the live group while the canary's cap allows it, else the paper group | CANARY_LIVE / CANARY_PAPER |
| live | the live group only | LIVE |

The validator decides (it alone sees every signal, in order) and stamps the decision on the
logged `SignalAccepted.route`, so every engine, a replay and a recovery route a signal the same way
and no engine keeps a counter. A signal gets at most one live route: the stamp names one.

The canary's cap: since the strategy became canary, live signals never exceed `canary_share` of its
flow (signals or notional, `canary_basis`), nor `canary_max_orders` signals, nor
`canary_max_notional_usd` (0: no such cap). A signal whose notional is not known (a market order of
a symbol with no price yet) goes to paper when a notional counts. The counts survive a restart: they
are kept in the risk snapshot and the stamps logged after it are counted again (`replay`).

A shadow copy is the signal under the strategy id `<strategy>~shadow` at the paper group: its orders,
reports and positions never mix with the strategy's own (its reports go to the shadow stream, not to
risk, the ledger or subscribers: `is_shadow`), and whoever adopts one after a failover knows it by
its strategy id alone. A cancel or replace of a strategy in modes is stamped for the group(s) its
original went to (node.amend_routes: AMEND_PAPER, AMEND_LIVE, AMEND_SHADOW; AMEND_UNKNOWN goes to
the live group alone, which holds an order routed before its strategy joined `[[modes]]` and refuses
an original it does not hold), on the copy's strategy
id at the paper group for a shadow order. An AMEND stamp (logged before the validator kept routes)
goes to both groups and only the engine that holds the original acts on it (`amend_at`).
"""

from __future__ import annotations

from enum import IntEnum

import msgspec

from node.config import ModeConfig, NodeConfig
from node.trading_mode import CanaryBasis, TradingMode
from node.instruments import DEFAULT_MULTIPLIERS, Multipliers
from node.messages import SignalAccepted
from node.pnl import pnl_by_strategy_symbol
from node.reconcile import BrokerBook, BrokerPnl, Fill

SHADOW_SUFFIX = "~shadow"
_CACHE_MAX = 100_000
_EPS = 1e-9


class Route(IntEnum):
    """The validator's decision, carried on `SignalAccepted.route`."""

    ROUTER = 0  # not in modes: the strategy router decides (node.router)
    PAPER = 1
    LIVE = 2
    SHADOW = 3  # live, and a copy at the paper group
    CANARY_PAPER = 4
    CANARY_LIVE = 5
    AMEND = 6  # a cancel / replace logged before the validator kept routes: both groups, the holder acts
    AMEND_PAPER = 7  # a cancel / replace of an order at the paper group (node.amend_routes)
    AMEND_LIVE = 8  # ... of an order at the live group
    AMEND_SHADOW = 9  # ... of a shadow order: the live group, and the paper group for the copy
    AMEND_UNKNOWN = 10  # ... of an order the validator does not know: the live group alone answers


#: the stamps that send a signal to the live group (exactly one live route each)
LIVE_ROUTES = frozenset({Route.LIVE, Route.SHADOW, Route.CANARY_LIVE})
#: the stamps of cancels and replaces (not counted as a route's signals)
AMEND_ROUTES = frozenset({Route.AMEND, Route.AMEND_PAPER, Route.AMEND_LIVE, Route.AMEND_SHADOW, Route.AMEND_UNKNOWN})
#: the stamps that send a copy of the signal to the paper group
_COPIED = frozenset({Route.SHADOW, Route.AMEND_SHADOW})
_STAMP_OF = {TradingMode.PAPER: Route.PAPER, TradingMode.LIVE: Route.LIVE, TradingMode.SHADOW: Route.SHADOW}
#: the promotion ladder, one step at a time either way
LADDER = (TradingMode.PAPER, TradingMode.SHADOW, TradingMode.CANARY, TradingMode.LIVE)


class ModeError(ValueError):
    """A mode change that cannot be made; `reason` is a code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason + ": " + detail)
        self.reason = reason
        self.detail = detail

    def __reduce__(self) -> tuple:  # crosses Ray (pickle) intact
        return (ModeError, (self.reason, self.detail))


class CanaryUsage(msgspec.Struct, kw_only=True):
    """A canary strategy's flow since it became canary: all of it, and what went live."""

    signals: int = 0
    notional: float = 0.0
    live_signals: int = 0
    live_notional: float = 0.0


def canary_goes_live(cfg: ModeConfig, usage: CanaryUsage, notional: float) -> bool:
    """Whether one more signal of `notional` (<= 0: not known) may go live within every cap."""
    known = notional > 0.0
    if cfg.canary_max_orders and usage.live_signals + 1 > cfg.canary_max_orders:
        return False
    if cfg.canary_max_notional_usd and (not known or usage.live_notional + notional > cfg.canary_max_notional_usd):
        return False
    if cfg.canary_basis is CanaryBasis.NOTIONAL:
        return known and usage.live_notional + notional <= cfg.canary_share * (usage.notional + notional) + _EPS
    return usage.live_signals + 1 <= cfg.canary_share * (usage.signals + 1) + _EPS


def count_canary(usage: CanaryUsage, notional: float, live: bool) -> None:
    n = notional if notional > 0.0 else 0.0
    usage.signals += 1
    usage.notional += n
    if live:
        usage.live_signals += 1
        usage.live_notional += n


def is_shadow(strategy_id: str) -> bool:
    return strategy_id.endswith(SHADOW_SUFFIX)


def shadow_copy(acc: SignalAccepted) -> SignalAccepted:
    signal = msgspec.structs.replace(acc.signal, strategy_id=acc.signal.strategy_id + SHADOW_SUFFIX)
    return SignalAccepted(acc.signal_id, acc.received_ns, signal, acc.route)


def check_step(current: TradingMode, wanted: TradingMode, force: bool = False) -> None:
    """A promotion or demotion moves one step along the ladder (paper, shadow, canary, live);
    `force` allows any jump (a demotion to paper in a hurry is always allowed)."""
    if force or wanted is TradingMode.PAPER or wanted is current:
        return
    if abs(LADDER.index(wanted) - LADDER.index(current)) != 1:
        raise ModeError("MODE_STEP", current.value + " -> " + wanted.value + " skips a step (one at a time, "
                        "or force)")


class ModeTable:
    """The modes of the strategies in `[[modes]]`: the validator stamps with it, every engine reads
    the stamps with it. Modes set at run time (`set_mode`) override the config's."""

    def __init__(self, modes: list[ModeConfig]) -> None:
        self._entries = list(modes)
        self.active = bool(self._entries)
        self._exact: dict[str, ModeConfig] = {}
        self._prefixes: list[tuple[str, ModeConfig]] = []
        for m in self._entries:
            for s in m.strategies:
                if s.endswith("*"):
                    self._prefixes.append((s[:-1], m))
                else:
                    self._exact.setdefault(s, m)
        self._cache: dict[str, ModeConfig | None] = {}
        self.modes: dict[str, TradingMode] = {}  # set at run time (the control stream's fold)
        self.canary: dict[str, CanaryUsage] = {}

    @classmethod
    def from_config(cls, cfg: NodeConfig) -> "ModeTable":
        return cls(cfg.modes)

    def entry_of(self, strategy_id: str) -> ModeConfig | None:
        found = self._cache.get(strategy_id, False)
        if found is not False:
            return found  # type: ignore[return-value]
        entry = self._exact.get(strategy_id)
        if entry is None:
            entry = next((m for p, m in self._prefixes if strategy_id.startswith(p)), None)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[strategy_id] = entry
        return entry

    def mode_of(self, strategy_id: str) -> TradingMode | None:
        entry = self.entry_of(strategy_id)
        if entry is None:
            return None
        return self.modes.get(strategy_id, entry.mode)

    def set_mode(self, strategy_id: str, mode: TradingMode) -> None:
        """Apply a mode (checked by the caller); entering canary starts its counts afresh."""
        if self.entry_of(strategy_id) is None:
            raise ModeError("NOT_IN_MODES", repr(strategy_id) + " is in no [[modes]] entry of the config")
        if mode is TradingMode.CANARY and self.mode_of(strategy_id) is not TradingMode.CANARY:
            self.canary[strategy_id] = CanaryUsage()
        self.modes[strategy_id] = mode

    # ------------------------------------------------------------ the validator

    def stamp(self, strategy_id: str, amend: bool, notional: float) -> Route:
        """The route of one accepted signal; a canary's signal is counted here."""
        entry = self.entry_of(strategy_id)
        if entry is None:
            return Route.ROUTER
        if amend:
            return Route.AMEND
        mode = self.modes.get(strategy_id, entry.mode)
        if mode is not TradingMode.CANARY:
            return _STAMP_OF[mode]
        usage = self.canary.get(strategy_id)
        if usage is None:
            usage = self.canary[strategy_id] = CanaryUsage()
        live = canary_goes_live(entry, usage, notional)
        count_canary(usage, notional, live)
        return Route.CANARY_LIVE if live else Route.CANARY_PAPER

    def replay(self, strategy_id: str, route: int, notional: float) -> None:
        """A canary stamp logged after the snapshot: counted again at restart."""
        if route == Route.CANARY_LIVE or route == Route.CANARY_PAPER:
            usage = self.canary.setdefault(strategy_id, CanaryUsage())
            count_canary(usage, notional, route == Route.CANARY_LIVE)

    # ------------------------------------------------------------ the engines

    def groups_of(self, strategy_id: str, route: int) -> tuple[str | None, str | None]:
        """(live group, paper group) a stamped signal goes to (None: none); (None, None) also for a
        strategy no longer in modes (the caller then asks the router)."""
        entry = self.entry_of(strategy_id)
        if entry is None or route == Route.ROUTER:
            return None, None
        if route in LIVE_ROUTES:
            return entry.live_group, entry.paper_group if route == Route.SHADOW else None
        if route == Route.AMEND or route == Route.AMEND_SHADOW:
            return entry.live_group, entry.paper_group
        if route == Route.AMEND_LIVE or route == Route.AMEND_UNKNOWN:
            return entry.live_group, None
        return None, entry.paper_group

    def take(self, acc: SignalAccepted, group: str) -> SignalAccepted | None:
        """What group `group` gets of a stamped signal (not a legacy AMEND: `amend_at`): the signal,
        its shadow copy, or None."""
        live, paper = self.groups_of(acc.signal.strategy_id, acc.route)
        if group == live:
            return acc
        if group == paper:
            return shadow_copy(acc) if acc.route in _COPIED else acc
        return None


def without_shadow(book: BrokerBook, mult: Multipliers = DEFAULT_MULTIPLIERS) -> BrokerBook:
    """A broker's book without the shadow copies (their fills, orders, and what their fills did to
    positions, cash and the broker's PnL): the node keeps no ledger of them, so the reconciler must not
    judge them. Cash and PnL at each symbol's contract multiplier (`mult`)."""
    shadow_fills = [f for f in book.fills if is_shadow(f.strategy_id)]
    shadow_orders = {o.client_order_id for o in book.orders if is_shadow(o.strategy_id)}
    if not shadow_fills and not shadow_orders:
        return book
    positions = dict(book.positions)
    cash = book.cash
    for f in shadow_fills:
        positions[f.symbol] = positions.get(f.symbol, 0.0) - f.signed_qty
        if cash is not None:
            cash += mult.value(f.symbol, f.signed_qty, f.px) + f.fee
    positions = {s: q for s, q in positions.items() if abs(q) > 1e-12}
    return msgspec.structs.replace(
        book, fills=[f for f in book.fills if not is_shadow(f.strategy_id)],
        orders=[o for o in book.orders if o.client_order_id not in shadow_orders], positions=positions, cash=cash,
        pnl=_pnl_without(book.pnl, shadow_fills, mult))


def _pnl_without(pnl: dict[str, BrokerPnl], shadow_fills: list[Fill], mult: Multipliers) -> dict[str, BrokerPnl]:
    """The broker's PnL per symbol less what the shadow copies' fills made there (their own average-cost
    PnL at the broker's mark, fees included): quantity, cost basis, realised and unrealised each less
    the copies'. Realised + unrealised is then exact (PnL is additive over fills); a broker that gives
    unrealised alone is judged on the copies' own unrealised taken out (exact unless the copies and the
    strategies closed against each other). Copies' fills outside the book's window are not known here."""
    if not pnl or not shadow_fills:
        return pnl
    out = dict(pnl)
    marks = {sym: p.mark for sym, p in pnl.items()}
    for (_, sym), line in pnl_by_strategy_symbol([f for f in shadow_fills if f.symbol in out], marks, mult=mult).items():
        p = out[sym]
        qty = p.qty - line.position
        cost = None
        if p.avg_cost is not None and abs(qty) > 1e-9:
            cost = (p.avg_cost * p.qty - line.avg_cost * line.position) / qty
        out[sym] = BrokerPnl(qty=qty, mark=p.mark, avg_cost=cost,
                             unrealised=None if p.unrealised is None else p.unrealised - line.unrealised,
                             realised=None if p.realised is None else p.realised - line.realised)
    return out


def amend_at(acc: SignalAccepted, original_strategy: str | None) -> SignalAccepted | None:
    """An AMEND-stamped signal at a group whose engine holds the original under `original_strategy`
    (None: it does not hold it, so the other group's engine acts): the signal, or its shadow copy."""
    if original_strategy is None:
        return None
    return shadow_copy(acc) if is_shadow(original_strategy) else acc
