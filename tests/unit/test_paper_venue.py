"""The paper venue: fills add up, levels walk, limits rest, stops trigger, latency delays, ids are once,
the price path depends on the seed and the clock only."""

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.paper.pricing import PricePath, symbol_streams
from adapters.paper.venue import DEPTH_LEVELS, PaperVenue
from node.config import PaperSymbol, PaperVenueConfig
from node.instruments import Multipliers
from node.messages import ExecKind, ExecutionReport, OrderIntent, OrderType, Side

T0 = 1_000_000_000_000_000_000  # a wall-clock-sized ns value, on the 50 ms grid
MS = 1_000_000
TICK = 50 * MS
FILLS = (ExecKind.PARTIAL_FILL, ExecKind.FILL)
_ids = itertools.count()


def venue(price=100.0, top=100.0, vol=2.0, **over) -> PaperVenue:
    cfg = dict(symbols=[PaperSymbol(symbol="AAPL", price=price, top_size=top, volatility_bps=vol)], seed=3)
    cfg.update(over)
    return PaperVenue(PaperVenueConfig(**cfg))


def intent(qty=10.0, side=Side.BUY, kind=OrderType.MARKET, symbol="AAPL", coid=None, **kw) -> OrderIntent:
    i = next(_ids)
    return OrderIntent(client_order_id=coid or "c%d" % i, signal_id="s", request_id="r%d" % i, strategy_id="st",
                       symbol=symbol, side=side, order_type=kind, quantity=qty, **kw)


def of(reports: list[ExecutionReport], coid: str) -> list[ExecutionReport]:
    return [r for r in reports if r.client_order_id == coid]


def fills_of(reports, coid):
    return [r for r in of(reports, coid) if r.kind in FILLS]


def run_until(v: PaperVenue, coid: str, until_kinds, max_ticks=4_000, t=T0):
    """Drive the clock one tick at a time (bounded) until the order reports one of `until_kinds`."""
    out = []
    for _ in range(max_ticks):
        t += TICK
        out += of(v.advance(t), coid)
        if out and out[-1].kind in until_kinds:
            break
    return out, t


# ---------------------------------------------------------------- market orders walk the levels


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
@pytest.mark.parametrize(
    "qty, top, n_fills",
    [(10.0, 100.0, 1), (100.0, 100.0, 1), (250.0, 100.0, 3), (1000.0, 100.0, 10), (0.5, 100.0, 1),
     (1.0, 0.3, 4), (0.7, 0.1, 7), (12.3457, 1.1, 12)],
)
def test_market_order_walks_levels_and_fills_add_up(side, qty, top, n_fills):
    v = venue(top=top)
    o = intent(qty, side=side)
    v.submit(o, T0)
    reps = of(v.advance(T0), o.client_order_id)
    fills = [r for r in reps if r.kind in FILLS]
    assert reps[0].kind is ExecKind.NEW and reps[0].leaves_qty == qty and reps[0].venue_order_id == "P-000001"
    assert len(fills) == n_fills and [f.kind for f in fills] == [ExecKind.PARTIAL_FILL] * (n_fills - 1) + [ExecKind.FILL]
    assert fills[-1].cum_qty == qty and fills[-1].leaves_qty == 0.0  # exactly the order, no float residue
    assert math.fsum(f.last_qty for f in fills) == pytest.approx(qty, abs=1e-9)
    assert all(f.last_qty > 0 and f.leaves_qty == qty - f.cum_qty or f.kind is ExecKind.FILL for f in fills)
    pxs = [f.last_px for f in fills]
    assert pxs == (sorted(set(pxs)) if side is Side.BUY else sorted(set(pxs), reverse=True))  # strictly worse
    assert [f.exec_id for f in fills] == ["E-P-000001-%d" % (k + 1) for k in range(n_fills)]
    assert fills[-1].avg_px == pytest.approx(sum(f.last_qty * f.last_px for f in fills) / qty)
    assert all(f.symbol == "AAPL" and f.side is side and f.ts_ns == T0 for f in fills)
    assert v.positions() == {"AAPL": qty if side is Side.BUY else -qty}


def test_levels_are_spaced_from_the_mid():
    v = venue(level_spacing_bps=10.0)
    o = intent(300.0)
    v.submit(o, T0)
    assert [f.last_px for f in fills_of(v.advance(T0), o.client_order_id)] == [100.05, 100.15, 100.25]


@pytest.mark.parametrize("cap, filled_levels", [(0.0003, 3), (0.00015, 2), (0.00014, 1), (0.00005, 1), (0.00004, 0), (0.0, 0), (0.05, 10)])
def test_slippage_cap_cancels_the_rest(cap, filled_levels):
    v = venue()  # levels at 0.5, 1.5, 2.5 ... bps from the mid
    o = intent(1000.0, max_slippage=cap)
    v.submit(o, T0)
    reps = of(v.advance(T0), o.client_order_id)
    assert len([r for r in reps if r.kind in FILLS]) == filled_levels
    if filled_levels < 10:
        assert (reps[-1].kind, reps[-1].reason) == (ExecKind.CANCELED, "SLIPPAGE")
        assert reps[-1].cum_qty == 100.0 * filled_levels and reps[-1].leaves_qty == 0.0
    else:
        assert reps[-1].kind is ExecKind.FILL


def test_market_order_deeper_than_the_book_cancels_the_rest():
    v = venue(top=1.0)
    o = intent(DEPTH_LEVELS + 5.0)
    v.submit(o, T0)
    reps = of(v.advance(T0), o.client_order_id)
    assert (reps[-1].kind, reps[-1].reason, reps[-1].cum_qty) == (ExecKind.CANCELED, "NO_LIQUIDITY", DEPTH_LEVELS)


@pytest.mark.parametrize(
    "notional, price, expect",
    [(1000.0, 100.0, 10.0), (1234.56, 100.0, 12.3456), (1000.0, 3.0, 333.3333), (0.3, 0.1, 3.0)],
)
def test_notional_is_sized_at_the_price_rounded_down(notional, price, expect):
    v = venue(price=price, top=1e6)
    o = OrderIntent(client_order_id="n1", signal_id="s", request_id="r", strategy_id="st", symbol="AAPL",
                    side=Side.BUY, order_type=OrderType.MARKET, notional=notional)
    v.submit(o, T0)
    fills = fills_of(v.advance(T0), "n1")
    assert fills[-1].kind is ExecKind.FILL and fills[-1].cum_qty == expect


@pytest.mark.parametrize(
    "symbol, multipliers, expect",
    [("AAPL250117C00150000", None, 2.0),  # an OCC option: 100 shares a contract by default
     ("AAPL  250117C00150000", Multipliers(option_multiplier=10.0), 20.0),  # the node's configured option size
     ("ESZ6", Multipliers(configured={"ESZ6": 50.0}), 4.0),  # a configured contract
     ("AAPL", Multipliers(configured={"ESZ6": 50.0}), 200.0)],  # a share
)
def test_notional_buys_contracts_of_the_symbols_multiplier(symbol, multipliers, expect):
    """A notional of $1,000 at $5 a share: 200 shares, or 200 / multiplier contracts (an option's
    premium is quoted per share; one contract is 100 of them), never 100x too many."""
    v = PaperVenue(PaperVenueConfig(symbols=[PaperSymbol(symbol=symbol, price=5.0, volatility_bps=0.0, top_size=1e6)]),
                   multipliers=multipliers)
    o = OrderIntent(client_order_id="n1", signal_id="s", request_id="r", strategy_id="st", symbol=symbol,
                    side=Side.BUY, order_type=OrderType.MARKET, notional=1_000.0)
    v.submit(o, T0)
    fills = fills_of(v.advance(T0), "n1")
    assert fills[-1].kind is ExecKind.FILL and fills[-1].cum_qty == expect


@pytest.mark.parametrize(
    "kw, reason",
    [(dict(symbol="NOPE"), "UNKNOWN_SYMBOL"),
     (dict(qty=None, notional=0.00001), "SIZE_SPEC"),  # rounds to 0 shares
     (dict(qty=None), "SIZE_SPEC"),
     (dict(qty=0.0), "SIZE_SPEC"),
     (dict(kind=OrderType.LIMIT), "PRICE_REQUIRED"),
     (dict(kind=OrderType.STOP_LIMIT, limit_price=100.0), "PRICE_REQUIRED")],
)
def test_unusable_orders_are_rejected_without_new(kw, reason):
    v = venue()
    o = intent(**kw)
    v.submit(o, T0)
    reps = v.advance(T0)
    assert [(r.kind, r.reason, r.client_order_id) for r in reps] == [(ExecKind.REJECTED, reason, o.client_order_id)]
    assert v.positions() == {} and v.fills() == []


# ---------------------------------------------------------------- limits and stops


def test_marketable_limit_fills_to_its_limit_and_rests_the_rest():
    v = venue()  # asks 100.005, 100.015, 100.025, ...
    o = intent(1000.0, kind=OrderType.LIMIT, limit_price=100.02)
    v.submit(o, T0)
    reps = of(v.advance(T0), o.client_order_id)
    assert [r.kind for r in reps] == [ExecKind.NEW, ExecKind.PARTIAL_FILL, ExecKind.PARTIAL_FILL]
    assert all(r.last_px <= 100.02 for r in reps[1:]) and reps[-1].leaves_qty == 800.0
    assert v.next_due_ns() == T0 + TICK  # it rests: the venue wants the next tick


@pytest.mark.parametrize("side, limit", [(Side.BUY, 99.0), (Side.SELL, 101.0), (Side.BUY, 100.0), (Side.SELL, 100.0)])
def test_limit_rests_then_fills_when_the_price_comes(side, limit):
    v = venue(vol=50.0)
    o = intent(50.0, side=side, kind=OrderType.LIMIT, limit_price=limit)
    v.submit(o, T0)
    assert [r.kind for r in of(v.advance(T0), o.client_order_id)] == [ExecKind.NEW]
    reps, _ = run_until(v, o.client_order_id, {ExecKind.FILL})
    assert reps and reps[-1].kind is ExecKind.FILL and reps[-1].cum_qty == 50.0
    assert all(r.last_px <= limit if side is Side.BUY else r.last_px >= limit for r in reps)
    assert v.next_due_ns() is None  # nothing rests, nothing scheduled: idle


def test_resting_fill_is_delivered_latency_after_its_tick():
    v = venue(vol=50.0, latency_us=700)
    o = intent(50.0, kind=OrderType.LIMIT, limit_price=100.0)
    v.submit(o, T0)
    v.advance(T0 + MS)
    t = T0
    for _ in range(4_000):
        t += TICK
        if v.advance(t) or v.next_due_ns() != t + TICK:
            break
    assert v.next_due_ns() == t + 700_000  # traded on tick t, not yet handed out
    reps = v.advance(t + 700_000)
    assert reps and all(r.kind in FILLS and r.ts_ns == t + 700_000 for r in reps)


@pytest.mark.parametrize("side, stop", [(Side.SELL, 99.0), (Side.BUY, 101.0)])
def test_stop_triggers_on_cross_then_trades_as_market(side, stop):
    v = venue(vol=50.0)
    o = intent(10.0, side=side, kind=OrderType.STOP, stop_price=stop)
    v.submit(o, T0)
    assert [r.kind for r in of(v.advance(T0), o.client_order_id)] == [ExecKind.NEW]
    reps, t = run_until(v, o.client_order_id, {ExecKind.FILL, ExecKind.CANCELED})
    assert [r.kind for r in reps] == [ExecKind.FILL]
    mid = reps[0].last_px / (1.0 + (0.5e-4 if side is Side.BUY else -0.5e-4))  # the mid it traded at
    assert (mid >= stop - 1e-3) if side is Side.BUY else (mid <= stop + 1e-3)


def test_stop_already_crossed_triggers_at_once():
    v = venue()
    o = intent(10.0, side=Side.SELL, kind=OrderType.STOP, stop_price=101.0)
    v.submit(o, T0)
    assert [r.kind for r in of(v.advance(T0), o.client_order_id)] == [ExecKind.NEW, ExecKind.FILL]


def test_stop_limit_triggers_then_rests_as_a_limit():
    v = venue(vol=50.0)
    o = intent(10.0, side=Side.SELL, kind=OrderType.STOP_LIMIT, stop_price=99.0, limit_price=98.0)
    v.submit(o, T0)
    assert [r.kind for r in of(v.advance(T0), o.client_order_id)] == [ExecKind.NEW]
    reps, _ = run_until(v, o.client_order_id, {ExecKind.FILL})
    assert reps[-1].kind is ExecKind.FILL and all(r.last_px >= 98.0 for r in reps)


def test_resting_fills_are_the_same_polled_each_tick_or_once():
    def run(poll_every_tick: bool):
        v = PaperVenueConfig(symbols=[PaperSymbol(symbol="A", price=100.0, volatility_bps=30.0, top_size=5.0),
                                      PaperSymbol(symbol="B", price=50.0, volatility_bps=30.0, top_size=5.0)],
                             seed=11, latency_us=700, fill_interval_us=300)
        v = PaperVenue(v)
        for sym, px in (("A", 100.0), ("B", 50.0)):
            v.submit(intent(40.0, symbol=sym, kind=OrderType.LIMIT, limit_price=px * 0.995), T0)
            v.submit(intent(40.0, symbol=sym, side=Side.SELL, kind=OrderType.LIMIT, limit_price=px * 1.005), T0)
            v.submit(intent(12.0, symbol=sym, side=Side.SELL, kind=OrderType.STOP_LIMIT, stop_price=px * 0.99,
                            limit_price=px * 0.985), T0)
            v.submit(intent(12.0, symbol=sym, kind=OrderType.STOP, stop_price=px * 1.01), T0)
        out = []
        if poll_every_tick:
            for k in range(2_001):
                out += v.advance(T0 + k * TICK)
        else:
            out += v.advance(T0 + 2_000 * TICK)
        return [(r.venue_order_id, r.kind, r.last_qty, r.last_px, r.ts_ns) for r in out], v.last_price("A")

    every, once = run(True), run(False)
    assert every == once
    assert sum(k is ExecKind.FILL for _, k, *_ in every[0]) >= 4  # something did trade


# ---------------------------------------------------------------- rejects, cancels, duplicates


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 1.0])
def test_reject_rate_is_about_what_is_configured(rate):
    v = venue(reject_rate=rate)
    for _ in range(2_000):
        v.submit(intent(1.0), T0)
    reps = v.advance(T0)
    rejected = [r for r in reps if r.kind is ExecKind.REJECTED]
    assert abs(len(rejected) - 2_000 * rate) <= 120  # > 5 binomial sd at 0.5
    assert all(r.reason == "VENUE_REJECT" for r in rejected)
    assert len([r for r in reps if r.kind is ExecKind.NEW]) == 2_000 - len(rejected)


def test_cancel_a_resting_order():
    v = venue(vol=50.0)
    o = intent(10.0, kind=OrderType.LIMIT, limit_price=50.0)
    v.submit(o, T0)
    v.cancel(o.client_order_id, T0)
    v.cancel(o.client_order_id, T0)  # twice: one CANCELED
    v.cancel("never-seen", T0)
    reps = v.advance(T0)
    assert [(r.kind, r.reason) for r in reps] == [(ExecKind.NEW, ""), (ExecKind.CANCELED, "CANCELED")]
    assert v.next_due_ns() is None and v.advance(T0 + 10_000 * TICK) == []
    assert [(s.kind, s.cum_qty, s.leaves_qty) for s in v.snapshot()] == [(ExecKind.CANCELED, 0.0, 0.0)]


def test_cancel_after_partial_keeps_the_fills_and_a_done_order_ignores_cancel():
    v = venue()
    o = intent(1000.0, kind=OrderType.LIMIT, limit_price=100.02)
    m = intent(5.0)
    v.submit(o, T0)
    v.submit(m, T0)
    v.cancel(o.client_order_id, T0 + 1)
    v.cancel(m.client_order_id, T0 + 1)  # already filled: no-op
    reps = v.advance(T0 + 1)
    assert of(reps, o.client_order_id)[-1].kind is ExecKind.CANCELED
    assert of(reps, o.client_order_id)[-1].cum_qty == 200.0
    assert [r.kind for r in of(reps, m.client_order_id)] == [ExecKind.NEW, ExecKind.FILL]


def test_duplicate_client_order_id_makes_no_second_order():
    v = venue()
    o = intent(10.0)
    v.submit(o, T0)
    first = v.advance(T0)
    v.submit(o, T0 + 1)  # the same id again, after it filled
    v.submit(intent(99.0, coid=o.client_order_id), T0 + 2)  # same id, other content
    assert v.advance(T0 + 10 * TICK) == [] and len(v.snapshot()) == 1
    assert [r.kind for r in first] == [ExecKind.NEW, ExecKind.FILL] and v.positions() == {"AAPL": 10.0}


# ---------------------------------------------------------------- time, state and determinism


def test_latency_delays_delivery_and_fills_are_spaced():
    v = venue(latency_us=2_000, fill_interval_us=500)
    o = intent(250.0)
    v.submit(o, T0)
    assert v.advance(T0 + 1 * MS) == [] and v.positions() == {} and v.fills() == []
    assert v.next_due_ns() == T0 + 2 * MS
    assert v.snapshot() == []  # not acknowledged before its first report is out (the venue's latency)
    first = v.advance(T0 + 2 * MS)
    assert [r.kind for r in first] == [ExecKind.NEW, ExecKind.PARTIAL_FILL]
    assert v.positions() == {"AAPL": 100.0} and v.snapshot()[0].cum_qty == 100.0
    assert v.next_due_ns() == T0 + 2 * MS + 500_000
    rest = v.advance(T0 + 3 * MS)
    assert [(r.kind, r.ts_ns) for r in rest] == [(ExecKind.PARTIAL_FILL, T0 + 2_500_000), (ExecKind.FILL, T0 + 3 * MS)]
    assert v.next_due_ns() is None


def test_positions_equal_the_signed_sum_of_fills():
    v = venue(symbols=[PaperSymbol(symbol="A", price=10.0, top_size=3.3), PaperSymbol(symbol="B", price=20.0)])
    for k in range(60):
        side = Side.BUY if k % 3 else Side.SELL
        v.submit(intent(0.1 + k * 0.77, side=side, symbol="AB"[k % 2]), T0 + k)
    v.advance(T0 + 100)
    signed: dict[str, float] = {}
    for f in v.fills():
        signed[f.symbol] = signed.get(f.symbol, 0.0) + (f.last_qty if f.side is Side.BUY else -f.last_qty)
    assert v.positions() == signed


def test_deterministic_for_a_seed_and_seeds_differ():
    def run(seed):
        v = venue(vol=20.0, seed=seed, reject_rate=0.2)
        out = []
        for k in range(50):
            v.submit(intent(150.0, side=Side.BUY if k % 2 else Side.SELL), T0 + k * 3 * TICK)
            out += [(r.kind, r.last_qty, r.last_px, r.reason) for r in v.advance(T0 + k * 3 * TICK)]
        return out

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_price_path_depends_only_on_seed_and_clock():
    quiet = venue(vol=20.0)
    busy = venue(vol=20.0, reject_rate=0.3)
    quiet.advance(T0)
    for k in range(200):
        busy.submit(intent(5.0, side=Side.SELL if k % 2 else Side.BUY), T0 + k * 7 * MS)
        busy.advance(T0 + k * 7 * MS)
    quiet.advance(T0 + 1_000 * TICK)
    busy.advance(T0 + 1_000 * TICK)
    assert quiet.last_price("AAPL") == busy.last_price("AAPL") != 100.0


@pytest.mark.parametrize("chunks", [[1] * 500, [500], [7, 100, 33, 360], [250, 250]])
def test_price_path_steps_land_on_the_same_bits(chunks):
    ref = PricePath(100.0, 20.0, symbol_streams(1, 1)[1][0])
    ref.step(500)
    p = PricePath(100.0, 20.0, symbol_streams(1, 1)[1][0])
    for n in chunks:
        if n % 2:
            p.step(n)
        else:
            p.path(n)
    assert p.mid == ref.mid and p.log_mid == ref.log_mid


def test_next_due_is_none_when_idle():
    v = venue()
    assert v.next_due_ns() is None
    v.advance(T0)
    assert v.next_due_ns() is None


# ---------------------------------------------------------------- properties

_order = st.tuples(
    st.floats(0.0001, 3_000, allow_nan=False),
    st.sampled_from(list(OrderType)),
    st.sampled_from([Side.BUY, Side.SELL]),
    st.floats(95, 105),
    st.floats(95, 105),
    st.sampled_from([None, 0.0, 0.0002, 0.01]),
    st.integers(0, 3 * TICK),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_order, min_size=1, max_size=25), st.integers(0, 3), st.sampled_from([0, 300]),
       st.sampled_from([0.0, 0.2]))
def test_fills_never_exceed_the_order_and_cum_is_monotone(orders, seed, latency_us, reject_rate):
    v = venue(top=37.5, vol=25.0, seed=seed, latency_us=latency_us, fill_interval_us=latency_us // 3,
              reject_rate=reject_rate)
    qty_of, t, reps = {}, T0, []
    for qty, kind, side, px, stop, cap, dt in orders:
        kw = {"max_slippage": cap}
        if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT):
            kw["limit_price"] = px
        if kind in (OrderType.STOP, OrderType.STOP_LIMIT):
            kw["stop_price"] = stop
        o = intent(qty, side=side, kind=kind, **kw)
        qty_of[o.client_order_id] = qty
        t += dt
        v.submit(o, t)
        reps += v.advance(t)
    reps += v.advance(t + 200 * TICK)
    assert [r.ts_ns for r in reps] == sorted(r.ts_ns for r in reps)
    assert len({r.exec_id for r in reps if r.exec_id}) == len(v.fills())
    for coid, qty in qty_of.items():
        mine = of(reps, coid)
        assert mine[0].kind in (ExecKind.NEW, ExecKind.REJECTED)
        cums = [r.cum_qty for r in mine if r.kind in FILLS]
        assert cums == sorted(cums) and all(c <= qty for c in cums)
        assert math.fsum(r.last_qty for r in mine) <= qty + 1e-9
        finals = [r for r in mine if r.kind in (ExecKind.FILL, ExecKind.CANCELED, ExecKind.REJECTED)]
        assert len(finals) <= 1 and mine[-1] is (finals[-1] if finals else mine[-1])
        if finals and finals[0].kind is ExecKind.FILL:
            assert finals[0].cum_qty == qty and finals[0].leaves_qty == 0.0
    signed: dict[str, float] = {}
    for f in v.fills():
        signed[f.symbol] = signed.get(f.symbol, 0.0) + (f.last_qty if f.side is Side.BUY else -f.last_qty)
    assert v.positions() == {s: q for s, q in signed.items() if abs(q) > 1e-9}


# ---------------------------------------------------------------- what a new leader's query reads


def test_the_query_views_are_the_full_lists_cut_by_id_and_time():
    v = venue(top=100.0)
    t = T0
    ids = []
    for k in range(6):
        order = intent(qty=250.0)  # three partial fills each
        ids.append(order.client_order_id)
        v.submit(order, t)
        t += TICK * 10
        v.advance(t)
    every = v.fills()
    assert len(every) == 18
    assert [s.client_order_id for s in v.snapshot_of([ids[4], "nope", ids[1]])] == [ids[4], ids[1]]
    assert v.fills_of([ids[2], "nope"]) == [f for f in every if f.client_order_id == ids[2]]
    cut = every[9].ts_ns
    assert v.fills_since(cut) == [f for f in every if f.ts_ns >= cut]
    assert v.fills_since(0) == every and v.fills_since(every[-1].ts_ns + 1) == []


def test_two_paper_venues_of_one_node_never_share_an_exec_id():
    """The ledger keys a fill by its exec id alone: a node's paper venues (two groups, or a paper and a
    live route) each count orders from 1, so the broker's name is in every exec id
    (`actors.hosts.build_venue`); without it the second venue's fill was dropped as a duplicate row."""
    from node.config import BrokerConfig

    from actors.hosts import build_venue

    cfg = PaperVenueConfig(symbols=[PaperSymbol(symbol="AAPL", price=100.0, top_size=100.0, volatility_bps=0.0)])
    execs = []
    for name in ("pv", "lv"):
        v = build_venue(BrokerConfig(name=name, kind="paper", paper=cfg))
        o = intent(250.0)
        v.submit(o, T0)
        execs.append({r.exec_id for r in of(v.advance(T0), o.client_order_id) if r.kind in FILLS})
    assert execs[0] and execs[1] and not execs[0] & execs[1], execs
