"""Paper / shadow / canary / live per strategy (node.modes): the canary's caps are never exceeded,
a signal takes exactly one live route or none, a shadow copy never goes live, the counts survive a
restart, and promotions move one step at a time. Fuzzed with hypothesis."""

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.config import CanaryBasis, ModeConfig, NodeConfig, TradingMode
from node.messages import Amend, AmendKind, Signal, SignalAccepted
from node.modes import (
    LIVE_ROUTES,
    SHADOW_SUFFIX,
    CanaryUsage,
    ModeError,
    ModeTable,
    Route,
    amend_at,
    canary_goes_live,
    check_step,
    is_shadow,
)
from node.orders import signal_id_for
from node.risk import controls as ctl

PAPER, LIVE = "paper", "live"
GROUPS = (PAPER, LIVE, "other")


def entry(**over) -> ModeConfig:
    return ModeConfig(strategies=["s*"], paper_group=PAPER, live_group=LIVE, **over)


def acc_of(strategy: str, rid: str, route: int, amend: bool = False) -> SignalAccepted:
    sig = Signal(request_id=rid, strategy_id=strategy, timestamp=0.0, symbol="AAPL", action="BUY", quantity=1.0,
                 amend=Amend(kind=AmendKind.CANCEL, original_request_id="r0") if amend else None)
    return SignalAccepted(signal_id_for(rid), 0, sig, route)


caps = st.fixed_dictionaries({
    "canary_share": st.floats(0.0, 1.0),
    "canary_basis": st.sampled_from(list(CanaryBasis)),
    "canary_max_orders": st.integers(0, 50),
    "canary_max_notional_usd": st.sampled_from([0.0, 1_000.0, 25_000.0, 1e6]),
})
notionals = st.lists(st.one_of(st.just(0.0), st.floats(1.0, 50_000.0)), max_size=300)


@settings(max_examples=300, deadline=None)
@given(caps, notionals)
def test_the_canary_cap_is_never_exceeded(cap, flow):
    cfg = entry(mode=TradingMode.CANARY, **cap)
    table = ModeTable([cfg])
    for i, notional in enumerate(flow):
        table.stamp("s1", False, notional)
        u = table.canary["s1"]
        assert u.signals == i + 1
        if cfg.canary_basis is CanaryBasis.COUNT:
            assert u.live_signals <= cfg.canary_share * u.signals + 1e-6
        else:
            assert u.live_notional <= cfg.canary_share * u.notional + 1e-6
        if cfg.canary_max_orders:
            assert u.live_signals <= cfg.canary_max_orders
        if cfg.canary_max_notional_usd:
            assert u.live_notional <= cfg.canary_max_notional_usd + 1e-6


def test_a_canary_sends_its_share_live_and_no_more():
    table = ModeTable([entry(mode=TradingMode.CANARY, canary_share=0.25)])
    routes = [table.stamp("s1", False, 100.0) for _ in range(100)]
    assert routes.count(Route.CANARY_LIVE) == 25
    assert routes.count(Route.CANARY_PAPER) == 75


def test_an_unknown_notional_never_goes_live_when_notional_counts():
    cfg = entry(mode=TradingMode.CANARY, canary_share=1.0, canary_max_notional_usd=10_000.0)
    assert not canary_goes_live(cfg, CanaryUsage(), 0.0)
    assert canary_goes_live(cfg, CanaryUsage(), 9_000.0)
    assert not canary_goes_live(cfg, CanaryUsage(live_notional=9_000.0), 2_000.0)


modes_and_moves = st.lists(st.one_of(st.sampled_from(list(TradingMode)), st.floats(1.0, 10_000.0)), max_size=200)


@settings(max_examples=300, deadline=None)
@given(modes_and_moves, caps)
def test_every_signal_takes_exactly_one_live_route_or_none(steps, cap):
    """Whatever the mode changes between signals: every group's engine builds the same table from the
    same config; the original signal reaches exactly one group, the live one only on a live stamp,
    and a shadow copy (never live: the paper group, the copy's strategy id) at most once."""
    cfg = entry(**cap)
    validator, engines = ModeTable([cfg]), {g: ModeTable([cfg]) for g in GROUPS}
    for n, step in enumerate(steps):
        if isinstance(step, TradingMode):
            validator.set_mode("s1", step)
            continue
        route = validator.stamp("s1", False, step)
        acc = acc_of("s1", "r" + str(n), route)
        got = {g: t.take(acc, g) for g, t in engines.items()}
        originals = [g for g, a in got.items() if a is not None and not is_shadow(a.signal.strategy_id)]
        copies = [g for g, a in got.items() if a is not None and is_shadow(a.signal.strategy_id)]
        assert len(originals) == 1
        assert (originals == [LIVE]) == (route in LIVE_ROUTES)
        assert copies == ([PAPER] if route == Route.SHADOW else [])
        if copies:
            assert got[PAPER].signal.strategy_id == "s1" + SHADOW_SUFFIX
            assert got[PAPER].signal_id == acc.signal_id


def test_stamps_per_mode():
    table = ModeTable([entry()])
    assert table.stamp("x", False, 1.0) == Route.ROUTER  # not in modes: the router's
    assert table.stamp("s1", False, 1.0) == Route.PAPER  # the config's mode
    for mode, stamp in [(TradingMode.SHADOW, Route.SHADOW), (TradingMode.LIVE, Route.LIVE)]:
        table.set_mode("s1", mode)
        assert table.stamp("s1", False, 1.0) == stamp
    assert table.stamp("s1", True, 0.0) == Route.AMEND
    with pytest.raises(ModeError):
        table.set_mode("x", TradingMode.LIVE)


def test_an_amend_goes_where_its_original_is_and_is_copied_for_a_copy():
    acc = acc_of("s1", "r1", Route.AMEND, amend=True)
    assert amend_at(acc, None) is None
    assert amend_at(acc, "s1") is acc
    assert amend_at(acc, "s1" + SHADOW_SUFFIX).signal.strategy_id == "s1" + SHADOW_SUFFIX
    assert ModeTable([entry()]).groups_of("s1", Route.AMEND) == (LIVE, PAPER)


@settings(max_examples=200, deadline=None)
@given(caps, notionals, st.integers(0, 300))
def test_the_counts_rebuilt_from_the_logged_stamps_equal_the_counts(cap, flow, cut):
    """A restart: the snapshot's counts up to some signal, then the stamps logged after it."""
    table = ModeTable([entry(mode=TradingMode.CANARY, **cap)])
    stamps = [table.stamp("s1", False, n) for n in flow]
    cut = min(cut, len(flow))
    rebuilt = ModeTable([entry(mode=TradingMode.CANARY, **cap)])
    for n, s in zip(flow[:cut], stamps[:cut]):
        rebuilt.replay("s1", s, n)
    snap = msgspec.structs.replace(rebuilt.canary.get("s1", CanaryUsage()))
    restarted = ModeTable([entry(mode=TradingMode.CANARY, **cap)])
    restarted.canary["s1"] = snap
    for n, s in zip(flow[cut:], stamps[cut:]):
        restarted.replay("s1", s, n)
    assert restarted.canary.get("s1", CanaryUsage()) == table.canary.get("s1", CanaryUsage())


def test_entering_canary_starts_its_counts_afresh():
    table = ModeTable([entry(mode=TradingMode.CANARY, canary_max_orders=1, canary_share=1.0)])
    assert table.stamp("s1", False, 1.0) == Route.CANARY_LIVE
    assert table.stamp("s1", False, 1.0) == Route.CANARY_PAPER
    table.set_mode("s1", TradingMode.SHADOW)
    table.set_mode("s1", TradingMode.CANARY)
    assert table.stamp("s1", False, 1.0) == Route.CANARY_LIVE


@pytest.mark.parametrize("current, wanted, force, ok", [
    (TradingMode.PAPER, TradingMode.SHADOW, False, True),
    (TradingMode.SHADOW, TradingMode.CANARY, False, True),
    (TradingMode.CANARY, TradingMode.LIVE, False, True),
    (TradingMode.LIVE, TradingMode.CANARY, False, True),
    (TradingMode.LIVE, TradingMode.PAPER, False, True),  # back to paper in a hurry: always
    (TradingMode.PAPER, TradingMode.LIVE, False, False),
    (TradingMode.PAPER, TradingMode.CANARY, False, False),
    (TradingMode.PAPER, TradingMode.LIVE, True, True),
])
def test_a_promotion_moves_one_step(current, wanted, force, ok):
    if ok:
        check_step(current, wanted, force)
    else:
        with pytest.raises(ModeError, match="MODE_STEP"):
            check_step(current, wanted, force)


def test_a_mode_change_is_a_control_that_folds_and_round_trips():
    state = ctl.ControlState()
    after = state.fold(ctl.SetMode("s1", TradingMode.CANARY))
    assert after is not None and state.modes == {"s1": TradingMode.CANARY}
    event = ctl.ControlEvent(control=ctl.SetMode("s1", TradingMode.LIVE), ts_ns=1, target="s1", after=after)
    assert ctl.decode_event(ctl.encode_event(event)) == event
    with pytest.raises(ctl.ControlError):
        ctl.checked_control(ctl.SetMode("", TradingMode.LIVE), NodeConfig().risk)


def test_an_old_signal_log_entry_decodes_with_no_stamp():
    sig = Signal(request_id="r1", strategy_id="s1", timestamp=0.0, symbol="AAPL", action="BUY", quantity=1.0)
    old = msgspec.msgpack.encode(["acc", "id", 5, sig])  # before `route` existed
    assert msgspec.msgpack.decode(old, type=SignalAccepted).route == Route.ROUTER


@pytest.mark.parametrize("over, match", [
    ({"paper_group": "nope"}, "unknown group"),
    ({"live_group": "eq"}, "one group"),
])
def test_config_refuses_bad_modes(over, match):
    groups = [{"name": "eq", "engines": [{"name": "a"}]}, {"name": "pp", "engines": [{"name": "b"}]}]
    mode = {"strategies": ["s*"], "paper_group": "eq", "live_group": "pp", **over}
    with pytest.raises(msgspec.ValidationError, match=match):
        msgspec.convert({"groups": groups, "modes": [mode]}, NodeConfig)


def _fill(acc: SignalAccepted, px: float, qty: float, ts_ns: int, shadow: bool = False):
    from node.messages import ExecKind, ExecutionReport

    strategy = acc.signal.strategy_id + (SHADOW_SUFFIX if shadow else "")
    return ExecutionReport(kind=ExecKind.FILL, client_order_id="NAE-" + acc.signal_id + "-0",
                           exec_id=("S" if shadow else "L") + acc.signal_id, symbol="AAPL", last_qty=qty, last_px=px,
                           cum_qty=qty, ts_ns=ts_ns, strategy_id=strategy, signal_id=acc.signal_id)


def test_the_report_compares_the_routes():
    from node.mode_report import compare, markdown

    def stamped(rid, route, limit=None):
        sig = Signal(request_id=rid, strategy_id="s1", timestamp=0.0, symbol="AAPL", action="BUY", quantity=2.0,
                     order_type="LIMIT" if limit else "MARKET", limit_price=limit)
        return SignalAccepted(signal_id_for(rid), 1_000_000, sig, route)

    a, b, c = stamped("a", Route.SHADOW, 100.0), stamped("b", Route.CANARY_PAPER, 100.0), stamped("c", Route.ROUTER)
    reports = [_fill(a, 100.5, 2.0, 3_000_000), _fill(b, 99.0, 2.0, 5_000_000), _fill(c, 1.0, 2.0, 1)]
    reports.append(reports[0])  # a repeated report: booked once
    shadow = [_fill(a, 100.0, 2.0, 2_000_000, shadow=True)]
    [row] = compare([a, b, c], reports, shadow)
    assert row.strategy_id == "s1"
    live, paper, copy = row.routes["live"], row.routes["paper"], row.routes["shadow"]
    assert (live.signals, live.filled, live.quantity, live.avg_px) == (1, 1, 2.0, 100.5)
    assert live.slippage_bps == pytest.approx(50.0) and live.latency_ms_p50 == 2.0
    assert (paper.filled, paper.slippage_bps) == (1, pytest.approx(-100.0))
    assert (copy.filled, copy.avg_px) == (1, 100.0)
    assert row.shadow_pairs == 1 and row.shadow_gap_bps == pytest.approx(50.0)
    assert "| s1 | live | 1 | 1 |" in markdown([row])
    assert compare([a, b, c], reports, shadow, strategy_id="other") == []


def test_the_reconciler_judges_a_broker_book_without_the_shadow_copies():
    from node.messages import ExecKind, Side
    from node.modes import without_shadow
    from node.reconcile import BrokerBook, Fill, Order

    own = Fill("e1", "NAE-a-0", "s1", "AAPL", Side.BUY, 2.0, 100.0)
    copy = Fill("e2", "NAE-b-0", "s1" + SHADOW_SUFFIX, "AAPL", Side.BUY, 3.0, 100.0, fee=1.0)
    book = BrokerBook(broker="paper", fills=[own, copy], positions={"AAPL": 5.0}, cash=-501.0,
                      orders=[Order("NAE-a-0", ExecKind.FILL, 2.0, strategy_id="s1"),
                              Order("NAE-b-0", ExecKind.FILL, 3.0, strategy_id="s1" + SHADOW_SUFFIX)])
    clean = without_shadow(book)
    assert clean.fills == [own] and [o.client_order_id for o in clean.orders] == ["NAE-a-0"]
    assert clean.positions == {"AAPL": 2.0} and clean.cash == pytest.approx(-200.0)
    plain = msgspec.structs.replace(book, fills=[own], orders=[], positions={"AAPL": 2.0})
    assert without_shadow(plain) is plain


class _Prices:
    """Just the last price risk would give the validator (no kernels needed here)."""

    def __init__(self, prices: dict[str, float]) -> None:
        self.prices = prices

    def last_price(self, symbol: str) -> float:
        return self.prices.get(symbol, 0.0)


@pytest.mark.parametrize("fields, notional", [
    ({"notional": 5_000.0}, 5_000.0),
    ({"quantity": 10.0}, 2_300.0),  # the last price
    ({"quantity": 10.0, "order_type": "LIMIT", "limit_price": 200.0}, 2_000.0),
    ({"quantity": 2.0, "symbol": "AAPL250117C00150000", "order_type": "LIMIT", "limit_price": 3.0}, 600.0),  # x100
    ({"quantity": 10.0, "symbol": "NOPX"}, 0.0),  # no price yet: not known
])
def test_the_validator_counts_a_canarys_notional_with_the_contract_multiplier(fields, notional):
    from actors.validator import Validator

    v = Validator(NodeConfig(), "", [], "", risk=_Prices({"AAPL": 230.0}))
    sig = msgspec.convert({"request_id": "r", "strategy_id": "s1", "timestamp": 0.0, "symbol": "AAPL",
                           "action": "BUY", **fields}, Signal)
    assert v._notional(sig) == pytest.approx(notional)


_QTY = st.integers(min_value=-50, max_value=50).filter(bool)
_PX = st.floats(min_value=1.0, max_value=500.0, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), _QTY, _PX, st.floats(min_value=0.0, max_value=2.0)), min_size=1, max_size=30),
       _PX, st.booleans())
def test_the_reconciler_judges_a_broker_pnl_without_the_shadow_copies(trades, mark, gives_realised):
    """The broker's account view values the strategies' fills and their shadow copies together (one
    average cost over the account); without the copies it is the node's own PnL, so no PNL_DRIFT, while
    the copies left in drift whenever they made or lost money."""
    from node.messages import Side
    from node.modes import without_shadow
    from node.pnl import compare_pnl, pnl_by_strategy_symbol
    from node.reconcile import BrokerBook, BrokerPnl, Fill, Opening

    fills = [Fill(f"e{i}", f"NAE-{i}", "s1" + (SHADOW_SUFFIX if shadow else ""), "AAPL",
                  Side.BUY if q > 0 else Side.SELL, float(abs(q)), px, fee=fee)
             for i, (shadow, q, px, fee) in enumerate(trades)]
    account = pnl_by_strategy_symbol([msgspec.structs.replace(f, strategy_id="account") for f in fills],
                                     {"AAPL": mark})[("account", "AAPL")]
    line = BrokerPnl(qty=account.position, mark=mark, avg_cost=account.avg_cost, unrealised=account.unrealised,
                     realised=account.realised if gives_realised else None)
    book = BrokerBook(broker="paper", fills=fills, orders=[], positions={"AAPL": account.position},
                      pnl={"AAPL": line})
    own = [f for f in fills if not is_shadow(f.strategy_id)]
    clean = without_shadow(book)
    mine = pnl_by_strategy_symbol(own, {"AAPL": mark}).get(("s1", "AAPL"))
    assert clean.pnl["AAPL"].qty == pytest.approx(mine.position if mine else 0.0, abs=1e-9)
    if gives_realised:  # realised + unrealised is additive over fills: exact
        assert compare_pnl(own, Opening(), clean.pnl, 1e-3) == []  # a cent's tenth: float sums only
        copies = pnl_by_strategy_symbol([f for f in fills if is_shadow(f.strategy_id)], {"AAPL": mark})
        made = sum(c.total for c in copies.values())
        if abs(made) > 0.01:
            assert compare_pnl(own, Opening(), book.pnl, 1e-3)
