"""The venue contract: what every broker venue behind a broker adapter implements, defined once.

A venue is driven by one thread, the broker adapter's loop (`actors/broker.py`), and never blocks
it on the order path: `submit` / `cancel` / `replace` hand the command over and return; what the
venue learns comes back as `ExecutionReport`s from `advance(now_ns)`, which the adapter calls on
every wake-up (and no later than `next_due_ns()`). A venue doing I/O in its own thread or process
(`IoVenue`) also exposes a `socket` the adapter polls, so its reports wake the loop at once.

Order states move only on the venue's evidence. A command whose outcome the venue cannot know
(no answer within its deadline, a connection lost mid-call) is reported `UNKNOWN`, never a made-up
REJECTED or CANCELED; the venue's next answer or sweep resolves it. A command the venue refuses
before it is sent (no connection, over the rate budget, an expired login, a maintenance window)
is REJECTED with a reason code: it never left the node.

The failover calls (`sent_ids`, `snapshot_of`, `fills_since`, `fills_of`) are what the adapter
answers a new leader's `QueryOrders` with and what it seeds its exactly-once gate from after a
restart. `VenueBase` derives them from `snapshot()` and `fills()` for a venue with no cheaper way.

A venue that can ask its broker for the account itself (Schwab, IBKR) also offers
`account_book(timeout_s) -> node.reconcile.BrokerBook`: the broker's own orders, executions,
positions and cash, for the reconciler; it blocks its caller, never the adapter's loop. Without it
the adapter's book is the venue's own (`actors.broker.book_of_venue`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Iterable, Protocol, runtime_checkable

import msgspec
import zmq

from node.messages import ExecKind, ExecutionReport, OrderIntent, OrderSnapshot, Side
from node.reasons import Reason

#: kinds after which an order can change no more
DONE_KINDS = frozenset({ExecKind.FILL, ExecKind.CANCELED, ExecKind.REJECTED})
#: fill times follow hand-out order only nearly: `fills_since` scans this far past its floor
FILL_TIME_SLACK_NS = 1_000_000_000


class VenueHealth(msgspec.Struct, frozen=True, kw_only=True):
    """Whether the venue takes orders now; when not, `reason` is the code new orders are refused with."""

    ok: bool
    reason: str = ""
    detail: str = ""
    #: seconds until the login (OAuth refresh token) lapses; None: the venue has no such login
    login_expires_in_s: float | None = None
    #: the same as an instant (seconds since the epoch; at or before now once it lapsed): the metric
    #: nae_broker_token_expiry_timestamp_seconds and its alerts read it
    login_expires_at_s: float | None = None


class Balances(msgspec.Struct, frozen=True, kw_only=True):
    """The account's money as the venue last reported it."""

    cash: float = 0.0
    buying_power: float = 0.0
    equity: float = 0.0
    currency: str = "USD"


@runtime_checkable
class Venue(Protocol):
    """Every broker venue: paper, paper-remote, LEAN, Schwab, IBKR (checked by one contract test,
    `tests/integration/test_venue_contract.py`)."""

    # ---------------------------------------------------------------- the order's life
    def submit(self, intent: OrderIntent, now_ns: int) -> None: ...
    def cancel(self, client_order_id: str, now_ns: int) -> None: ...
    def replace(self, client_order_id: str, intent: OrderIntent, now_ns: int) -> None:
        """Replace a live order by a new one named `intent.client_order_id`: the old one ends
        CANCELED with reason REPLACED once the venue confirms, the new one lives on."""
        ...

    def advance(self, now_ns: int) -> list[ExecutionReport]: ...
    def next_due_ns(self) -> int | None: ...

    # ---------------------------------------------------------------- what the venue has
    def status(self, client_order_id: str) -> OrderSnapshot | None: ...
    def snapshot(self) -> list[OrderSnapshot]: ...
    def fills(self) -> list[ExecutionReport]: ...
    def positions(self) -> dict[str, float]: ...
    def balances(self) -> Balances: ...
    def health(self, now_ns: int) -> VenueHealth: ...

    # ---------------------------------------------------------------- failover
    def sent_ids(self) -> list[str]: ...
    def snapshot_of(self, client_order_ids: Iterable[str]) -> list[OrderSnapshot]: ...
    def fills_since(self, since_ns: int) -> list[ExecutionReport]: ...
    def fills_of(self, client_order_ids: Iterable[str]) -> list[ExecutionReport]: ...


@runtime_checkable
class IoVenue(Venue, Protocol):
    """A venue whose I/O runs elsewhere (a thread, a process): the adapter opens it on its loop
    thread, polls `socket` for its reports and closes it on stop."""

    socket: zmq.Socket | None

    def open(self, ctx: zmq.Context) -> None: ...
    def close(self) -> None: ...


class VenueBase(ABC):
    """The parts of `Venue` that follow from the others (a venue overrides them when it has a
    cheaper way): status and failover lookups from `snapshot()` / `fills()`, positions from fills,
    and the defaults of a venue with no account money or login to report."""

    @abstractmethod
    def submit(self, intent: OrderIntent, now_ns: int) -> None: ...

    @abstractmethod
    def cancel(self, client_order_id: str, now_ns: int) -> None: ...

    @abstractmethod
    def advance(self, now_ns: int) -> list[ExecutionReport]: ...

    @abstractmethod
    def snapshot(self) -> list[OrderSnapshot]: ...

    @abstractmethod
    def fills(self) -> list[ExecutionReport]: ...

    def replace(self, client_order_id: str, intent: OrderIntent, now_ns: int) -> None:
        """Default: cancel, then submit the replacement (a venue with a native replace overrides)."""
        self.cancel(client_order_id, now_ns)
        self.submit(intent, now_ns)

    def next_due_ns(self) -> int | None:
        return None

    def status(self, client_order_id: str) -> OrderSnapshot | None:
        found = self.snapshot_of((client_order_id,))
        return found[0] if found else None

    def snapshot_of(self, client_order_ids: Iterable[str]) -> list[OrderSnapshot]:
        wanted = set(client_order_ids)
        return [s for s in self.snapshot() if s.client_order_id in wanted]

    def sent_ids(self) -> list[str]:
        return [s.client_order_id for s in self.snapshot()]

    def fills_since(self, since_ns: int) -> list[ExecutionReport]:
        return [f for f in self.fills() if f.ts_ns >= since_ns]

    def fills_of(self, client_order_ids: Iterable[str]) -> list[ExecutionReport]:
        wanted = set(client_order_ids)
        return [f for f in self.fills() if f.client_order_id in wanted]

    def positions(self) -> dict[str, float]:
        return positions_of(self.fills())

    def balances(self) -> Balances:
        return Balances()

    def health(self, now_ns: int) -> VenueHealth:
        return VenueHealth(ok=True)


def positions_of(fills: Iterable[ExecutionReport]) -> dict[str, float]:
    """Net filled quantity per symbol (buys +, sells -) over `fills`, deduped by exec id; flat omitted."""
    pos: dict[str, float] = {}
    seen: set[str] = set()
    for f in fills:
        if f.exec_id:
            if f.exec_id in seen:
                continue
            seen.add(f.exec_id)
        pos[f.symbol] = pos.get(f.symbol, 0.0) + (f.last_qty if f.side is Side.BUY else -f.last_qty)
    return {s: q for s, q in pos.items() if abs(q) > 1e-9}


def refused(intent: OrderIntent, reason: Reason | str, now_ns: int) -> ExecutionReport:
    """The REJECTED report of an order the venue never sent (no connection, budget, login, window)."""
    return ExecutionReport(
        kind=ExecKind.REJECTED,
        client_order_id=intent.client_order_id,
        symbol=intent.symbol,
        side=intent.side,
        reason=str(reason),
        ts_ns=now_ns,
    )


def unknown(intent: OrderIntent, reason: Reason | str, now_ns: int) -> ExecutionReport:
    """The UNKNOWN report of a command whose outcome the venue cannot know yet."""
    return ExecutionReport(
        kind=ExecKind.UNKNOWN,
        client_order_id=intent.client_order_id,
        symbol=intent.symbol,
        side=intent.side,
        reason=str(reason),
        ts_ns=now_ns,
    )
