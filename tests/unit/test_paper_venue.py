"""The paper venue: fills add up, levels walk, limits rest, stops trigger, latency delays, ids are once."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.paper.venue import PaperVenue
from node.config import PaperSymbol, PaperVenueConfig
from node.messages import ExecKind, OrderIntent, OrderType, Side

T0 = 1_000_000_000_000
MS = 1_000_000


def venue(**over) -> PaperVenue:
    cfg = dict(symbols=[PaperSymbol(symbol="AAPL", price=100.0, top_size=100.0)], seed=3)
    cfg.update(over)
    return PaperVenue(PaperVenueConfig(**cfg))


_n = iter(range(10**9))


def intent(qty=10.0, side=Side.BUY, kind=OrderType.MARKET, symbol="AAPL", **kw) -> OrderIntent:
    i = next(_n)
    return OrderIntent(client_order_id="c%d" % i, signal_id="s", request_id="r%d" % i, strategy_id="st",
                       symbol=symbol, side=side, order_type=kind, quantity=qty, **kw)


def reports_of(v, coid, until=T0):
    return [r for r in v.advance(until) if r.client_order_id == coid]


@pytest.mark.parametrize("qty, n_fills", [(10.0, 1), (100.0, 1), (250.0, 3), (1000.0, 10), (0.5, 1)])
def test_market_order_walks_levels_and_fills_add_up(qty, n_fills):
    v = venue()
    o = intent(qty)
    v.submit(o, T0)
    reps = reports_of(v, o.client_order_id)
    assert reps[0].kind is ExecKind.NEW
    fills = [r for r in reps if r.kind in (ExecKind.PARTIAL_FILL, ExecKind.FILL)]
    assert len(fills) == n_fills and fills[-1].kind is ExecKind.FILL
    assert sum(f.last_qty for f in fills) == pytest.approx(qty) and fills[-1].cum_qty == qty
    assert [f.last_px for f in fills] == sorted(f.last_px for f in fills)  # a buy walks up
    assert len({f.exec_id for f in fills}) == n_fills
    assert v.positions() == {"AAPL": pytest.approx(qty)}


def test_sell_walks_down_and_positions_net():
    v = venue()
    v.submit(intent(300.0), T0)
    s = intent(500.0, side=Side.SELL)
    v.submit(s, T0)
    fills = [r for r in reports_of(v, s.client_order_id) if r.last_qty]
    assert [f.last_px for f in fills] == sorted((f.last_px for f in fills), reverse=True)
    assert v.positions() == {"AAPL": pytest.approx(-200.0)}


def test_notional_is_sized_at_the_price():
    v = venue()
    o = OrderIntent(client_order_id="n1", signal_id="s", request_id="r", strategy_id="st", symbol="AAPL",
                    side=Side.BUY, order_type=OrderType.MARKET, notional=1000.0)
    v.submit(o, T0)
    fills = [r for r in v.advance(T0) if r.last_qty]
    assert sum(f.last_qty for f in fills) == pytest.approx(10.0, rel=1e-3)


def test_slippage_cap_cancels_the_rest():
    v = venue()
    o = intent(1000.0, max_slippage=0.0003)  # levels at 0.5, 1.5, 2.5 bps: three fit
    v.submit(o, T0)
    reps = reports_of(v, o.client_order_id)
    assert reps[-1].kind is ExecKind.CANCELED and reps[-1].reason == "SLIPPAGE"
    assert reps[-1].cum_qty == pytest.approx(300.0)


def test_limit_rests_then_fills_when_price_comes():
    v = venue(symbols=[PaperSymbol(symbol="AAPL", price=100.0, top_size=100.0, volatility_bps=50.0)])
    buy = intent(50.0, kind=OrderType.LIMIT, limit_price=99.0)
    v.submit(buy, T0)
    assert [r.kind for r in reports_of(v, buy.client_order_id)] == [ExecKind.NEW]
    t, kinds = T0, []
    for _ in range(20_000):
        t += 50 * MS
        kinds += [r.kind for r in reports_of(v, buy.client_order_id, t)]
        if ExecKind.FILL in kinds:
            break
    assert kinds[-1] is ExecKind.FILL
    fill_px = [f for f in v.fills() if f.client_order_id == buy.client_order_id][0].last_px
    assert fill_px <= 99.0


def test_marketable_limit_fills_at_once():
    v = venue()
    o = intent(50.0, kind=OrderType.LIMIT, limit_price=105.0)
    v.submit(o, T0)
    assert reports_of(v, o.client_order_id)[-1].kind is ExecKind.FILL


def test_stop_triggers_on_cross():
    v = venue(symbols=[PaperSymbol(symbol="AAPL", price=100.0, top_size=100.0, volatility_bps=50.0)])
    stop = intent(10.0, side=Side.SELL, kind=OrderType.STOP, stop_price=99.0)
    v.submit(stop, T0)
    t, kinds = T0, [r.kind for r in reports_of(v, stop.client_order_id)]
    assert kinds == [ExecKind.NEW]
    for _ in range(20_000):
        t += 50 * MS
        kinds += [r.kind for r in reports_of(v, stop.client_order_id, t)]
        if ExecKind.FILL in kinds:
            break
    assert kinds[-1] is ExecKind.FILL


def test_latency_delays_delivery():
    v = venue(latency_us=2_000, fill_interval_us=500)
    o = intent(250.0)
    v.submit(o, T0)
    assert v.advance(T0 + 1 * MS) == []
    assert v.next_due_ns() == T0 + 2 * MS
    first = v.advance(T0 + 2 * MS)
    assert [r.kind for r in first] == [ExecKind.NEW, ExecKind.PARTIAL_FILL]
    rest = v.advance(T0 + 3 * MS)
    assert [r.kind for r in rest] == [ExecKind.PARTIAL_FILL, ExecKind.FILL]


def test_reject_rate_and_unknown_symbol():
    v = venue(reject_rate=0.25)
    for _ in range(2_000):
        v.submit(intent(1.0), T0)
    rejected = sum(r.kind is ExecKind.REJECTED for r in v.advance(T0))
    assert 400 <= rejected <= 600
    u = intent(1.0, symbol="NOPE")
    v.submit(u, T0)
    assert [(r.kind, r.reason) for r in reports_of(v, u.client_order_id)] == [(ExecKind.REJECTED, "UNKNOWN_SYMBOL")]


def test_cancel_and_duplicate_client_order_id():
    v = venue()
    o = intent(10.0, kind=OrderType.LIMIT, limit_price=50.0)
    v.submit(o, T0)
    v.submit(o, T0)  # the same id again: nothing new
    v.cancel(o.client_order_id, T0)
    v.cancel("never-seen", T0)
    kinds = [r.kind for r in v.advance(T0)]
    assert kinds == [ExecKind.NEW, ExecKind.CANCELED]
    assert len(v.snapshot()) == 1


def test_deterministic_for_a_seed():
    def run():
        v = venue(symbols=[PaperSymbol(symbol="AAPL", price=100.0, volatility_bps=20.0)])
        out = []
        for k in range(50):
            v.submit(intent(10.0), T0 + k * 100 * MS)
            out += [(r.kind, r.last_px) for r in v.advance(T0 + k * 100 * MS)]
        return out

    assert run() == run()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0.01, 5_000), st.sampled_from([OrderType.MARKET, OrderType.LIMIT]),
                          st.sampled_from([Side.BUY, Side.SELL]), st.floats(90, 110)), min_size=1, max_size=20))
def test_fills_never_exceed_the_order_and_cum_is_monotone(orders):
    v = venue()
    for qty, kind, side, px in orders:
        kw = {"limit_price": px} if kind is OrderType.LIMIT else {}
        v.submit(intent(qty, side=side, kind=kind, **kw), T0)
    by_order: dict[str, list] = {}
    for r in v.advance(T0 + 10 * MS):
        by_order.setdefault(r.client_order_id, []).append(r)
    for (qty, *_), reps in zip(orders, by_order.values()):
        cums = [r.cum_qty for r in reps if r.last_qty]
        assert cums == sorted(cums)
        assert sum(r.last_qty for r in reps) <= qty + 1e-6
