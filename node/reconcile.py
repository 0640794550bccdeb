"""The diff of two books: what the node believes (ledger + orders) against what the broker holds.

Pure logic: no I/O, no clock. `diff_books(node, broker, cfg)` takes two typed snapshots and returns
the typed, classified discrepancies, each with both sides' values:

| kind | what it means | resolved by |
|---|---|---|
| MISSING_FILL | the broker has a fill of an order the node knows; the ledger lacks it (dropped on the way, node killed between the fill and its row) | booked once (`to_book`) |
| FILL_UNKNOWN_TO_LEDGER | the broker has a fill of an order the node never had | booked once, with the order |
| FILL_UNKNOWN_TO_BROKER | the ledger has a fill the broker does not (in its window) | the operator (fails closed) |
| ORDER_UNKNOWN_TO_NODE | an order at the broker the node never placed (placed by hand, or while the node was down) | adopted, never re-sent |
| ORDER_UNKNOWN_TO_BROKER | an order the node holds open that the broker does not have | the engine's recovery; alert |
| STATUS_MISMATCH | one side says open, the other done (a missed cancel, an UNKNOWN the broker answered) | alert |
| QUANTITY_MISMATCH | the same fill or order with another quantity (after the fills above are counted) | fails closed |
| PRICE_MISMATCH | the same fill at another price | alert (PnL differs) |
| POSITION_DRIFT | the broker's position differs from the node's by more than every fill difference explains (a position edited at the venue) | fails closed |
| CASH_DRIFT | the same for cash, when both sides give it | alert |
| PNL_DRIFT | the broker's PnL of a symbol (its account view) differs from the node's at the broker's mark by more than the tolerance (`node.pnl.compare_pnl`) | alert |

A difference explained by another is not reported twice: a dropped fill is exactly one
MISSING_FILL (its order's quantity and the symbol's position are expected to differ by that fill).
Broker fills and orders younger than `settle_ns` before the broker snapshot's time are in flight:
not judged in this run (their differences still explain positions). So is what the node's events
stream holds and its ledger has not written yet (`settle_logged`: the ledger's reads linger, a
promotion's catch-up appends a burst at once). Ledger fills older than the broker's window (`BrokerBook.fills_since_ns`) are not
compared fill by fill (a broker answers for a window), but always count in positions.

The node's positions and cash start from its opening book (`NodeBook.opening_positions`, `cash`):
what the broker accounts held before the node's first fill, taken once by `opening_of` from the
first broker book the node saw with an empty ledger.
"""

from __future__ import annotations

import math
from collections import defaultdict
from enum import StrEnum
from typing import Iterable

import msgspec

from node.instruments import DEFAULT_MULTIPLIERS, Multipliers
from node.messages import ExecKind, ExecutionReport, Side

#: order states in which an order can still trade
OPEN_STATES = frozenset({ExecKind.NEW, ExecKind.PARTIAL_FILL, ExecKind.UNKNOWN})
#: the strategy an adopted order is booked under when the broker does not say whose it is
EXTERNAL_STRATEGY = "EXTERNAL"
#: the symbol of the cash line
CASH = "$CASH"
#: the reason of the reports that book an order the node did not know (`to_book`)
ADOPTED = "ADOPTED"


class DiscrepancyKind(StrEnum):
    MISSING_FILL = "MISSING_FILL"
    FILL_UNKNOWN_TO_LEDGER = "FILL_UNKNOWN_TO_LEDGER"
    FILL_UNKNOWN_TO_BROKER = "FILL_UNKNOWN_TO_BROKER"
    ORDER_UNKNOWN_TO_NODE = "ORDER_UNKNOWN_TO_NODE"
    ORDER_UNKNOWN_TO_BROKER = "ORDER_UNKNOWN_TO_BROKER"
    STATUS_MISMATCH = "STATUS_MISMATCH"
    QUANTITY_MISMATCH = "QUANTITY_MISMATCH"
    PRICE_MISMATCH = "PRICE_MISMATCH"
    POSITION_DRIFT = "POSITION_DRIFT"
    CASH_DRIFT = "CASH_DRIFT"
    PNL_DRIFT = "PNL_DRIFT"


#: kinds the reconciler resolves by booking what the broker has (never by sending anything)
BOOKABLE = frozenset({DiscrepancyKind.MISSING_FILL, DiscrepancyKind.FILL_UNKNOWN_TO_LEDGER,
                      DiscrepancyKind.ORDER_UNKNOWN_TO_NODE})
#: kinds that leave the node's position wrong once everything bookable is booked: they fail closed
DRIFTS = frozenset({DiscrepancyKind.POSITION_DRIFT, DiscrepancyKind.FILL_UNKNOWN_TO_BROKER,
                    DiscrepancyKind.QUANTITY_MISMATCH})


class Fill(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One execution, keyed on the broker-stable `exec_id`. `fee`: fees and commissions, >= 0."""

    exec_id: str
    client_order_id: str
    strategy_id: str
    symbol: str
    side: Side
    qty: float
    px: float
    ts_ns: int = 0
    fee: float = 0.0
    venue_order_id: str = ""

    @property
    def signed_qty(self) -> float:
        return self.qty if self.side is Side.BUY else -self.qty


class Order(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One order as one side sees it (`strategy_id`, `symbol`, `side` may be "" when unknown)."""

    client_order_id: str
    state: ExecKind
    cum_qty: float
    leaves_qty: float = 0.0
    strategy_id: str = ""
    symbol: str = ""
    side: Side = Side.BUY
    venue_order_id: str = ""
    avg_px: float = 0.0
    ts_ns: int = 0  # its last activity (0: unknown); a broker's order younger than the settle time is in flight


class BrokerPnl(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One symbol as the broker's account view values it: its mark (market price) and, where the
    broker gives them, its average cost, unrealised and realised PnL (None: not given)."""

    qty: float
    mark: float
    avg_cost: float | None = None
    unrealised: float | None = None
    realised: float | None = None


class Opening(msgspec.Struct, frozen=True, kw_only=True):
    """The accounts before the node's first fill: positions, their average cost where the broker
    gave one, and cash (None: a broker gave none)."""

    positions: dict[str, float] = {}
    costs: dict[str, float] = {}
    cash: float | None = None


class NodeBook(msgspec.Struct, frozen=True, kw_only=True):
    """The node's side: the ledger's fills and orders, from its opening positions. `cash` None:
    the node keeps no cash figure (else: its opening cash less what its fills cost, fees included)."""

    fills: list[Fill]
    orders: list[Order]
    opening_positions: dict[str, float] = {}
    cash: float | None = None


class BrokerBook(msgspec.Struct, frozen=True, kw_only=True):
    """The broker's side. `fills_since_ns`: the start of the window its fills cover (0: all).
    `as_of_ns`: when it was taken (the broker's clock). `cash` None: the broker gives none.
    `fees_reported`: its fills carry the fees it charged (else the node's fee schedule stands in).
    `pnl`: its account view per symbol, where it gives one."""

    broker: str
    account: str = ""
    fills: list[Fill]
    orders: list[Order]
    positions: dict[str, float]
    cash: float | None = None
    fills_since_ns: int = 0
    as_of_ns: int = 0
    fees_reported: bool = False
    pnl: dict[str, BrokerPnl] = {}


class Discrepancy(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One difference, with both sides' values (None where a side has nothing)."""

    kind: DiscrepancyKind
    symbol: str = ""
    strategy_id: str = ""
    client_order_id: str = ""
    exec_id: str = ""
    node_qty: float | None = None
    broker_qty: float | None = None
    node_px: float | None = None
    broker_px: float | None = None
    node_state: str = ""
    broker_state: str = ""
    node_pnl: float | None = None
    broker_pnl: float | None = None


class DiffConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    qty_tolerance: float = 1e-6
    px_tolerance: float = 1e-6
    cash_tolerance: float = 0.01
    settle_ns: int = 2_000_000_000


class Diff(msgspec.Struct, frozen=True, kw_only=True):
    """The result: the discrepancies, the differences in flight (not judged: broker fills within the
    settle time; with `settle_logged`, also what the events stream holds and the ledger has not
    written), and each side's position per symbol (the symbols either side holds or a discrepancy
    names)."""

    discrepancies: list[Discrepancy]
    in_flight: int
    node_positions: dict[str, float]
    broker_positions: dict[str, float]

    @property
    def matched(self) -> bool:
        return not self.discrepancies


def diff_books(node: NodeBook, broker: BrokerBook, cfg: DiffConfig = DiffConfig(),
               mult: Multipliers = DEFAULT_MULTIPLIERS) -> Diff:
    """Classify every difference between the two books (see the module docstring). Cash at each
    symbol's contract multiplier (`mult`)."""
    value = mult.value
    tol, ptol = cfg.qty_tolerance, cfg.px_tolerance
    out: list[Discrepancy] = []
    node_fills = {f.exec_id: f for f in node.fills}
    node_orders = {o.client_order_id: o for o in node.orders}
    broker_orders = {o.client_order_id: o for o in broker.orders}
    settle_before = broker.as_of_ns - cfg.settle_ns if broker.as_of_ns else None
    # expected broker position - node position, per symbol, from the fill differences; cash likewise
    explained: dict[str, float] = {}
    explained_cash = 0.0
    extra_cum: dict[str, float] = {}  # per order: broker cum expected over the node's, from fills
    in_flight = 0
    flying: set[str] = set()  # orders with a fill in flight
    K = DiscrepancyKind
    get = node_fills.get
    matched = 0
    for bf in broker.fills:
        eid = bf.exec_id
        nf = get(eid)
        if nf is not None:
            matched += 1
            if nf.qty == bf.qty and nf.px == bf.px and nf.side is bf.side and nf.symbol == bf.symbol:
                if nf.fee != bf.fee:  # the fast path: the same fill on both sides
                    explained_cash -= bf.fee - nf.fee
                continue
        bq = bf.signed_qty
        if nf is None:
            if settle_before is not None and bf.ts_ns > settle_before:
                in_flight += 1
                flying.add(bf.client_order_id)
            else:
                known = bf.client_order_id in node_orders
                out.append(Discrepancy(
                    kind=K.MISSING_FILL if known else K.FILL_UNKNOWN_TO_LEDGER, symbol=bf.symbol,
                    strategy_id=node_orders[bf.client_order_id].strategy_id if known else bf.strategy_id,
                    client_order_id=bf.client_order_id, exec_id=eid, broker_qty=bq, broker_px=bf.px,
                ))
            explained[bf.symbol] = explained.get(bf.symbol, 0.0) + bq
            explained_cash -= value(bf.symbol, bq, bf.px) + bf.fee
            extra_cum[bf.client_order_id] = extra_cum.get(bf.client_order_id, 0.0) + bf.qty
            continue
        nq = nf.signed_qty
        if abs(bq - nq) > tol or bf.symbol != nf.symbol:
            out.append(Discrepancy(
                kind=K.QUANTITY_MISMATCH, symbol=bf.symbol, strategy_id=nf.strategy_id,
                client_order_id=bf.client_order_id, exec_id=eid, node_qty=nq, broker_qty=bq,
                node_px=nf.px, broker_px=bf.px,
            ))
            explained[bf.symbol] = explained.get(bf.symbol, 0.0) + bq
            explained[nf.symbol] = explained.get(nf.symbol, 0.0) - nq
            extra_cum[bf.client_order_id] = extra_cum.get(bf.client_order_id, 0.0) + bf.qty - nf.qty
        elif abs(bf.px - nf.px) > ptol * max(1.0, abs(nf.px)):
            out.append(Discrepancy(
                kind=K.PRICE_MISMATCH, symbol=bf.symbol, strategy_id=nf.strategy_id,
                client_order_id=bf.client_order_id, exec_id=eid, node_qty=nq, broker_qty=bq,
                node_px=nf.px, broker_px=bf.px,
            ))
        explained_cash -= value(bf.symbol, bq, bf.px) + bf.fee - value(nf.symbol, nq, nf.px) - nf.fee
    if matched < len(node_fills):  # some ledger fills the broker did not name: which, in its window
        seen = {f.exec_id for f in broker.fills}
        window = broker.fills_since_ns
        for nf in node.fills:
            if nf.exec_id in seen or nf.ts_ns < window:
                continue
            nq = nf.signed_qty
            out.append(Discrepancy(
                kind=K.FILL_UNKNOWN_TO_BROKER, symbol=nf.symbol, strategy_id=nf.strategy_id,
                client_order_id=nf.client_order_id, exec_id=nf.exec_id, node_qty=nq, node_px=nf.px,
            ))
            explained[nf.symbol] = explained.get(nf.symbol, 0.0) - nq
            explained_cash += value(nf.symbol, nq, nf.px) + nf.fee
            extra_cum[nf.client_order_id] = extra_cum.get(nf.client_order_id, 0.0) - nf.qty
    if settle_before is not None:  # an order the broker moved within the settle time: judged next run
        for coid, bo in broker_orders.items():
            if bo.ts_ns > settle_before:
                flying.add(coid)
    out.extend(_diff_orders(node_orders, broker_orders, extra_cum, tol, flying))
    node_pos = positions_of(node.fills, node.opening_positions)
    symbols = set(node_pos) | set(broker.positions) | set(explained)
    node_positions: dict[str, float] = {}
    broker_positions: dict[str, float] = {}
    for sym in sorted(symbols):
        mine = node_pos.get(sym, 0.0)
        theirs = broker.positions.get(sym, 0.0)
        node_positions[sym] = mine
        broker_positions[sym] = theirs
        if abs(theirs - (mine + explained.get(sym, 0.0))) > tol:
            out.append(Discrepancy(kind=K.POSITION_DRIFT, symbol=sym, node_qty=mine, broker_qty=theirs))
    if node.cash is not None and broker.cash is not None:
        if abs(broker.cash - (node.cash + explained_cash)) > cfg.cash_tolerance:
            out.append(Discrepancy(kind=K.CASH_DRIFT, symbol=CASH, node_qty=node.cash, broker_qty=broker.cash))
    return Diff(discrepancies=out, in_flight=in_flight, node_positions=node_positions,
                broker_positions=broker_positions)


def _diff_orders(
    node_orders: dict[str, Order], broker_orders: dict[str, Order], extra_cum: dict[str, float], tol: float,
    flying: set[str],
) -> list[Discrepancy]:
    K = DiscrepancyKind
    out: list[Discrepancy] = []
    for coid, bo in broker_orders.items():
        no = node_orders.get(coid)
        if coid in flying:
            continue  # judged next run, once its reports had the time to reach the ledger
        if no is None:
            out.append(Discrepancy(
                kind=K.ORDER_UNKNOWN_TO_NODE, symbol=bo.symbol, strategy_id=bo.strategy_id, client_order_id=coid,
                broker_qty=bo.cum_qty, broker_state=bo.state,
            ))
            continue
        # the node's order row may or may not have heard of the fills it lacks (a later report
        # carries the cum_qty of a dropped one): either agrees with the fill differences found
        extra = extra_cum.get(coid, 0.0)
        if abs(bo.cum_qty - no.cum_qty) > tol and abs(bo.cum_qty - no.cum_qty - extra) > tol:
            out.append(Discrepancy(
                kind=K.QUANTITY_MISMATCH, symbol=no.symbol or bo.symbol, strategy_id=no.strategy_id,
                client_order_id=coid, node_qty=no.cum_qty, broker_qty=bo.cum_qty,
                node_state=no.state, broker_state=bo.state,
            ))
            continue
        node_open = no.state in OPEN_STATES
        broker_open = bo.state in OPEN_STATES
        if node_open != broker_open or no.state is ExecKind.UNKNOWN:
            if node_open and not broker_open and extra_cum.get(coid, 0.0) > tol and bo.state is ExecKind.FILL:
                continue  # the missing fill is the story: booking it closes the order
            out.append(Discrepancy(
                kind=K.STATUS_MISMATCH, symbol=no.symbol or bo.symbol, strategy_id=no.strategy_id,
                client_order_id=coid, node_qty=no.cum_qty, broker_qty=bo.cum_qty,
                node_state=no.state, broker_state=bo.state,
            ))
    for coid, no in node_orders.items():
        if coid not in broker_orders and no.state in OPEN_STATES:
            out.append(Discrepancy(
                kind=K.ORDER_UNKNOWN_TO_BROKER, symbol=no.symbol, strategy_id=no.strategy_id, client_order_id=coid,
                node_qty=no.cum_qty, node_state=no.state,
            ))
    return out


def positions_of(fills: Iterable[Fill], opening: dict[str, float] | None = None) -> dict[str, float]:
    """Net quantity per symbol (buys +, sells -) over `fills`, from the opening positions."""
    pos: defaultdict[str, float] = defaultdict(float, opening or {})
    buy = Side.BUY
    for f in fills:
        if f.side is buy:
            pos[f.symbol] += f.qty
        else:
            pos[f.symbol] -= f.qty
    return dict(pos)


def settle_logged(diff: Diff, logged_execs: set[str], logged_orders: set[str]) -> Diff:
    """The bookable differences the node's events stream explains: a broker fill whose exec_id it
    holds, an order it holds reports of, that the ledger has not written yet. They are the node's
    own, in flight between its log and its ledger (which writes them from the log): not judged in
    this run, counted in `in_flight`, never booked (booking one would publish it twice)."""
    K = DiscrepancyKind

    def logged(d: Discrepancy) -> bool:
        if d.kind is K.MISSING_FILL or d.kind is K.FILL_UNKNOWN_TO_LEDGER:
            return d.exec_id in logged_execs
        return d.kind is K.ORDER_UNKNOWN_TO_NODE and d.client_order_id in logged_orders

    kept = [d for d in diff.discrepancies if not logged(d)]
    if len(kept) == len(diff.discrepancies):
        return diff
    return msgspec.structs.replace(diff, discrepancies=kept,
                                   in_flight=diff.in_flight + len(diff.discrepancies) - len(kept))


def to_book(diff: Diff, broker: BrokerBook, external_strategy: str = EXTERNAL_STRATEGY,
            now_ns: int = 0) -> list[ExecutionReport]:
    """The execution reports that book what the broker has and the node lacks, each once: a NEW for
    every order unknown to the node (adopted: never re-sent), then every missing fill in the broker's
    order, carrying its order's strategy (the node's, the broker's, or `external_strategy`). The
    ledger and the risk book dedupe on exec_id, so booking the same report again changes nothing."""
    K = DiscrepancyKind
    orders = {o.client_order_id: o for o in broker.orders}
    wanted_fills = {d.exec_id for d in diff.discrepancies if d.kind in (K.MISSING_FILL, K.FILL_UNKNOWN_TO_LEDGER)}
    strategy_of = {d.client_order_id: d.strategy_id for d in diff.discrepancies if d.strategy_id}
    out: list[ExecutionReport] = []
    if not any(d.kind in BOOKABLE for d in diff.discrepancies):
        return out
    for d in diff.discrepancies:
        if d.kind is not K.ORDER_UNKNOWN_TO_NODE:
            continue
        o = orders[d.client_order_id]
        out.append(ExecutionReport(
            kind=ExecKind.NEW, client_order_id=o.client_order_id, venue_order_id=o.venue_order_id,
            symbol=o.symbol, side=o.side, leaves_qty=o.leaves_qty + o.cum_qty, reason=ADOPTED,
            ts_ns=now_ns, strategy_id=o.strategy_id or external_strategy,
        ))
    adopted = {r.client_order_id for r in out}
    wanted_orders = {d.client_order_id for d in diff.discrepancies if d.exec_id in wanted_fills}
    cum: dict[str, float] = {}
    for f in broker.fills:  # the broker's order: cum_qty grows as the reports did
        if f.client_order_id not in wanted_orders:
            continue
        c = cum.get(f.client_order_id, 0.0) + f.qty
        cum[f.client_order_id] = c
        if f.exec_id not in wanted_fills:
            continue
        # the order as the broker has it now (the ledger keeps the highest cum_qty it was told): a
        # fill booked late must not leave its order's row behind the fills the node already has
        o = orders.get(f.client_order_id)
        cum_now = max(o.cum_qty, c) if o is not None else c
        leaves = o.leaves_qty if o is not None else 0.0
        out.append(ExecutionReport(
            kind=ExecKind.FILL if leaves <= 1e-9 else ExecKind.PARTIAL_FILL,
            client_order_id=f.client_order_id, venue_order_id=f.venue_order_id or (o.venue_order_id if o else ""),
            exec_id=f.exec_id, symbol=f.symbol, side=f.side, last_qty=f.qty, last_px=f.px, cum_qty=cum_now,
            leaves_qty=leaves, avg_px=(o.avg_px if o is not None and o.avg_px else f.px), reason="RECONCILED",
            ts_ns=f.ts_ns,
            strategy_id=(strategy_of.get(f.client_order_id) or f.strategy_id or (o.strategy_id if o else "")
                         or external_strategy),
        ))
    for coid in adopted:  # an adopted order that is over at the broker is over in the ledger too
        o = orders[coid]
        if o.state in (ExecKind.CANCELED, ExecKind.REJECTED):
            out.append(ExecutionReport(
                kind=o.state, client_order_id=coid, venue_order_id=o.venue_order_id, symbol=o.symbol, side=o.side,
                cum_qty=o.cum_qty, avg_px=o.avg_px, reason=ADOPTED, ts_ns=now_ns,
                strategy_id=o.strategy_id or external_strategy,
            ))
    return out


def opening_of(broker: BrokerBook, mult: Multipliers = DEFAULT_MULTIPLIERS) -> Opening:
    """The opening book a node with an empty ledger takes from its first broker book: the broker's
    positions and cash less what every fill in its window did (those fills the node books, or
    finds, as the broker's: an opening position is never counted twice). Average costs: the
    broker's, for symbols no fill in its window touched."""
    traded = positions_of(broker.fills)
    positions = {}
    for sym in set(broker.positions) | set(traded):
        q = broker.positions.get(sym, 0.0) - traded.get(sym, 0.0)
        if abs(q) > 1e-9:
            positions[sym] = q
    costs = {sym: p.avg_cost for sym, p in broker.pnl.items()
             if sym in positions and sym not in traded and p.avg_cost is not None}
    cash = None
    if broker.cash is not None:
        cash = broker.cash + math.fsum(mult.value(f.symbol, f.signed_qty, f.px) + f.fee for f in broker.fills)
    return Opening(positions=positions, costs=costs, cash=cash)


def cash_of(opening_cash: float, fills: Iterable[Fill], mult: Multipliers = DEFAULT_MULTIPLIERS) -> float:
    """The cash a node expects: its opening cash less what each fill cost (bought - sold, at the
    symbol's contract multiplier, + fees)."""
    return opening_cash - math.fsum(mult.value(f.symbol, f.signed_qty, f.px) + f.fee for f in fills)


def fill_of_report(rep: ExecutionReport, strategy_id: str = "") -> Fill:
    """A broker's fill report as a `Fill` (fees: none on the wire yet)."""
    return Fill(rep.exec_id, rep.client_order_id, strategy_id or rep.strategy_id, rep.symbol, rep.side,
                rep.last_qty, rep.last_px, rep.ts_ns, 0.0, rep.venue_order_id)


def orders_from_fills(fills: Iterable[Fill], totals: dict[str, float] | None = None) -> list[Order]:
    """The orders a list of fills implies (a test and bench helper, and a node side for a broker
    that answers fills only): cum per order, FILL when it reaches its total (or no total given)."""
    acc: dict[str, list] = {}
    for f in fills:
        a = acc.get(f.client_order_id)
        if a is None:
            acc[f.client_order_id] = [f, f.qty, f.qty * f.px]
        else:
            a[1] += f.qty
            a[2] += f.qty * f.px
    out = []
    for coid, (f, q, notional) in acc.items():
        total = totals.get(coid, q) if totals else q
        leaves = max(0.0, total - q)
        state = ExecKind.FILL if leaves <= 1e-9 else ExecKind.PARTIAL_FILL
        out.append(Order(coid, state, q, leaves, f.strategy_id, f.symbol, f.side, f.venue_order_id,
                         notional / q if q else 0.0))
    return out


def is_finite_book(book: NodeBook | BrokerBook) -> bool:
    """Every quantity, price, cash and valuation finite (a trust-boundary check before a diff)."""
    cash = book.cash
    return all(math.isfinite(f.qty) and math.isfinite(f.px) for f in book.fills) and all(
        math.isfinite(o.cum_qty) for o in book.orders) and (cash is None or math.isfinite(cash)) and (
        not isinstance(book, BrokerBook) or all(is_finite_pnl(p) for p in book.pnl.values()))


def is_finite_pnl(p: BrokerPnl) -> bool:
    """Every number of a broker's valuation line finite (a line that is not is not read)."""
    return all(x is None or math.isfinite(x) for x in (p.qty, p.mark, p.avg_cost, p.unrealised, p.realised))
