"""The paper venue keeps its account across restarts: what it handed out is logged first, and a
venue restored from the log shows the same orders, fills, positions and cash, works its open orders
on, never reuses a venue order id or exec id, and hands out nothing it could not log."""

import itertools

import pytest

from adapters.paper.records import OrderTaken, Record, decode_records, encode_records
from adapters.paper.venue import LOG_RETRY_NS, PaperVenue
from node.config import PaperSymbol, PaperVenueConfig
from node.messages import ExecKind, OrderIntent, OrderType, Side

T0 = 1_000_000_000_000_000_000
MS = 1_000_000
TICK = 50 * MS
_ids = itertools.count()


class ListLog:
    """A BookLog in memory (each append one entry, through the real encoding); `fail` refuses writes."""

    def __init__(self) -> None:
        self.entries: list[bytes] = []
        self.fail = False

    def append(self, records: list[Record]) -> None:
        if self.fail:
            raise ConnectionError("store away")
        self.entries.append(encode_records(records))

    def records(self) -> list[Record]:
        return [r for e in self.entries for r in decode_records(e)]


def cfg() -> PaperVenueConfig:
    return PaperVenueConfig(symbols=[PaperSymbol(symbol="AAPL", price=100.0, top_size=100.0, volatility_bps=2.0),
                                     PaperSymbol(symbol="MSFT", price=300.0, top_size=50.0, volatility_bps=2.0)],
                            seed=3, latency_us=1_000)


def intent(qty=10.0, side=Side.BUY, kind=OrderType.MARKET, symbol="AAPL", **kw) -> OrderIntent:
    i = next(_ids)
    return OrderIntent(client_order_id="c%d" % i, signal_id="s", request_id="r%d" % i, strategy_id="st%d" % (i % 2),
                       symbol=symbol, side=side, order_type=kind, quantity=qty, **kw)


def account(v: PaperVenue) -> tuple:
    return (sorted(v.positions().items()), [(f.exec_id, f.last_qty, f.last_px) for f in v.fills()],
            sorted((o.client_order_id, o.state, o.cum_qty, o.leaves_qty, o.strategy_id, o.venue_order_id)
                   for o in v.order_book()), round(v.cash(), 6), sorted(v.sent_ids()))


def trade(v: PaperVenue, t: int) -> tuple[list, int]:
    """Market orders that walk levels (partial fills), a resting limit, a canceled one, a notional
    order, a position edited at the venue; every report handed out."""
    out = []
    v.submit(intent(250.0), t)
    v.submit(intent(120.0, Side.SELL, symbol="MSFT"), t)
    v.submit(OrderIntent(client_order_id="notional", signal_id="s", request_id="rn", strategy_id="st0", symbol="AAPL",
                    side=Side.BUY, order_type=OrderType.MARKET, notional=1_000.0), t)
    resting = intent(40.0, kind=OrderType.LIMIT, limit_price=90.0)
    v.submit(resting, t)
    gone = intent(40.0, kind=OrderType.LIMIT, limit_price=80.0)
    v.submit(gone, t)
    t += TICK
    out += v.advance(t)
    v.cancel(gone.client_order_id, t)
    t += TICK
    out += v.advance(t)
    v.adjust_position("MSFT", 7.0)
    return out, t


def test_a_restored_venue_shows_the_same_account():
    log = ListLog()
    v = PaperVenue(cfg(), log)
    _, t = trade(v, T0)
    again = PaperVenue(cfg(), log)
    again.restore(log.records(), t + 3_600_000 * MS)  # an hour later
    assert account(again) == account(v)
    assert again.positions()["MSFT"] == pytest.approx(-120.0 + 7.0)
    assert again.cash() == pytest.approx(v.cash()) and again.cash() != cfg().starting_cash_usd


def test_the_compacted_log_restores_the_same_account():
    log = ListLog()
    v = PaperVenue(cfg(), log)
    _, t = trade(v, T0)
    again = PaperVenue(cfg())
    again.restore(v.compacted(), t)
    assert account(again) == account(v)
    assert len(v.compacted()) < len(log.records())


def test_open_orders_work_on_and_ids_are_never_reused():
    log = ListLog()
    v = PaperVenue(cfg(), log)
    out, t = trade(v, T0)
    before = {f.exec_id for f in v.fills()} | {r.venue_order_id for r in out}
    again = PaperVenue(cfg(), log)
    again.restore(log.records(), t)
    resting = [o for o in again.order_book() if o.state is ExecKind.NEW]
    assert len(resting) == 1  # the limit at 90 rests on
    # a new order after the restart: a new venue order id, new exec ids
    new = intent(10.0)
    again.submit(new, t + TICK)
    reports = again.advance(t + 2 * TICK)
    mine = [r for r in reports if r.client_order_id == new.client_order_id]
    assert mine and all(r.venue_order_id not in before for r in mine)
    assert all(r.exec_id not in before for r in mine if r.exec_id)
    # the same client order id again is no new order (the venue remembers it across the restart)
    n = len(again.order_book())
    again.submit(resting_intent := OrderIntent(
        client_order_id=resting[0].client_order_id, signal_id="s", request_id="x", strategy_id="st",
        symbol="AAPL", side=Side.BUY, order_type=OrderType.MARKET, quantity=1.0), t + 3 * TICK)
    assert len(again.order_book()) == n and resting_intent.client_order_id in again.sent_ids()


def test_a_resting_limit_restored_fills_when_the_price_comes_to_it():
    log = ListLog()
    c = PaperVenueConfig(symbols=[PaperSymbol(symbol="AAPL", price=100.0, top_size=100.0, volatility_bps=0.0)],
                         seed=3)
    v = PaperVenue(c, log)
    lim = intent(30.0, side=Side.SELL, kind=OrderType.LIMIT, limit_price=100.5)
    v.submit(lim, T0)
    assert [r.kind for r in v.advance(T0 + TICK)] == [ExecKind.NEW]
    again = PaperVenue(PaperVenueConfig(symbols=[PaperSymbol(symbol="AAPL", price=101.0, top_size=100.0,
                                                             volatility_bps=0.0)], seed=3), log)
    # no fill was ever handed out, so the price starts from the config: here 101, above the limit
    again.restore(log.records(), T0 + 2 * TICK)
    reports = again.advance(T0 + 3 * TICK)
    assert [r.kind for r in reports] == [ExecKind.FILL] and reports[0].last_qty == 30.0
    assert again.positions() == {"AAPL": -30.0}


def test_reports_never_handed_out_are_not_in_the_account():
    log = ListLog()
    v = PaperVenue(cfg(), log)
    v.submit(intent(10.0), T0)  # its reports are due at T0 + 1 ms: the venue "dies" before that
    assert v.advance(T0) == []
    again = PaperVenue(cfg(), log)
    again.restore(log.records(), T0 + TICK)
    assert again.order_book() == [] and again.fills() == [] and again.positions() == {}


def test_nothing_is_handed_out_that_could_not_be_logged():
    log = ListLog()
    v = PaperVenue(cfg(), log)
    o = intent(250.0)
    v.submit(o, T0)
    log.fail = True
    assert v.advance(T0 + TICK) == [] and v.log_errors == 1
    assert v.fills() == [] and v.positions() == {}
    assert v.advance(T0 + TICK + MS) == []  # waits before trying the store again (no busy loop)
    assert v.next_due_ns() >= T0 + TICK + 100 * MS
    log.fail = False
    reports = v.advance(T0 + TICK + 200 * MS)
    assert [r.kind for r in reports][0] is ExecKind.NEW and reports[-1].kind is ExecKind.FILL
    assert sum(r.last_qty for r in reports) == 250.0
    again = PaperVenue(cfg(), log)
    again.restore(log.records(), T0 + 2 * TICK)
    assert account(again) == account(v)


def test_a_position_edit_that_cannot_be_logged_changes_nothing():
    log = ListLog()
    v = PaperVenue(cfg(), log)
    log.fail = True
    with pytest.raises(ConnectionError):
        v.adjust_position("AAPL", 5.0)
    assert v.positions() == {}


def test_restore_refuses_a_venue_that_traded():
    v = PaperVenue(cfg())
    v.submit(intent(1.0), T0)
    with pytest.raises(RuntimeError):
        v.restore([], T0)


class LateLog(ListLog):
    """A store that takes a write and then times out answering it (`late`): the venue retries the
    records, so the log holds them twice."""

    def __init__(self) -> None:
        super().__init__()
        self.late = False

    def append(self, records: list[Record]) -> None:
        super().append(records)
        if self.late:
            self.late = False
            raise TimeoutError("the store took it, the answer was lost")


def test_a_write_the_store_took_but_did_not_answer_restores_once():
    log = LateLog()
    v = PaperVenue(cfg(), log)
    v.submit(intent(250.0), T0)  # walks levels: several fills
    v.submit(intent(30.0, Side.SELL, symbol="MSFT"), T0)
    log.late = True
    assert v.advance(T0 + TICK) == []  # not handed out: its write "failed"
    out = v.advance(T0 + TICK + 200 * MS)  # retried: the log holds these records twice
    assert out and len({r.exec_id for r in out if r.exec_id}) == len([r for r in out if r.exec_id])
    again = PaperVenue(cfg(), log)
    again.restore(log.records(), T0 + 10 * TICK)
    assert account(again) == account(v)  # each fill once: positions and cash as handed out


@pytest.mark.parametrize("with_log", [True, False])
def test_an_order_is_listed_only_once_its_first_report_is_out(with_log):
    """A listing (what a new leader's QueryOrders and the reconciler read) shows an order only once
    its first report was handed out, written to the book log first: listed as NEW before that, an
    engine took it for acknowledged and never sent it again, and the venue, killed before its write,
    had lost it (one order of a 30-kill run). While the log refuses writes it stays unlisted."""
    log = ListLog() if with_log else None
    v = PaperVenue(cfg(), log)
    it = intent(5.0)
    v.submit(it, T0)  # its NEW is due 1 ms later (latency_us)
    coid = it.client_order_id
    assert v.snapshot() == [] and v.snapshot_of([coid]) == [] and v.status(coid) is None and v.order_book() == []
    if with_log:
        log.fail = True
        assert v.advance(T0 + 5 * MS) == []
        assert v.snapshot_of([coid]) == [] and v.status(coid) is None
        log.fail = False
        v.advance(T0 + 5 * MS + LOG_RETRY_NS)
        assert [r.intent.client_order_id for r in log.records() if type(r) is OrderTaken] == [coid]
    else:
        v.advance(T0 + 5 * MS)
    assert [s.client_order_id for s in v.snapshot_of([coid])] == [coid] and v.status(coid) is not None
    assert [s.client_order_id for s in v.snapshot()] == [coid] and len(v.order_book()) == 1
