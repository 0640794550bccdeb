"""Contract multipliers in pre-trade risk: an OCC option's notional is quantity x price x 100
(`option_multiplier`), a configured symbol's x its own multiplier, a share's x 1."""

from __future__ import annotations

import msgspec
import pytest

from node.instruments import Multipliers, is_occ_option
from node.messages import ExecKind, ExecutionReport, Side, Signal
from node.reasons import Reason
from node.risk import PreTradeRisk
from node.risk.config import RiskLimits, throughput_limits

CALL = "AAPL250117C00150000"


def risk(**limits) -> PreTradeRisk:
    cfg = msgspec.structs.replace(throughput_limits(), max_notional_usd=250_000.0, **limits)
    return PreTradeRisk(cfg, ["AAPL", CALL, "ES"], {"AAPL": 200.0, CALL: 5.0, "ES": 5000.0}, 1e9)


def signal(symbol: str, qty: float, **over) -> Signal:
    return msgspec.convert(dict(request_id="r" + symbol + str(qty), strategy_id="s", timestamp=0.0, symbol=symbol,
                                action="BUY", quantity=qty) | over, Signal)


@pytest.mark.parametrize("symbol, expected", [
    (CALL, True), ("AAPL  250117C00150000", True), ("SPY251219P00500000", True), ("AAPL", False),
    ("AAPL250117X00150000", False), ("TOOLONGROOT250117C00150000", False),
])  # fmt: skip
def test_occ_symbols_are_known_by_their_spelling(symbol, expected):
    assert is_occ_option(symbol) is expected


@pytest.mark.parametrize("symbol, qty, refused", [
    ("AAPL", 1_000.0, False),  # 200k
    ("AAPL", 1_300.0, True),  # 260k
    (CALL, 400.0, False),  # 400 x 5 x 100 = 200k
    (CALL, 600.0, True),  # 300k (600 x 5 = 3k without the multiplier)
    ("ES", 4.0, True),  # configured 50: 4 x 5000 x 50 = 1M
    ("ES", 0.5, False),  # 125k
])  # fmt: skip
def test_max_notional_counts_the_contract_multiplier(symbol, qty, refused):
    r = risk(contract_multipliers={"ES": 50.0})
    assert (Reason.MAX_NOTIONAL in r.check(signal(symbol, qty), 1)) is refused


def test_the_multiplier_is_configurable_and_limit_prices_are_per_share():
    r = risk(option_multiplier=10.0)
    assert r.check(signal(CALL, 600.0), 1) == []  # 600 x 5 x 10 = 30k
    limit = signal(CALL, 400.0, order_type="LIMIT", limit_price=5.05)  # inside the collar, per share
    assert risk().check(limit, 1) == []
    assert Reason.PRICE_COLLAR in risk().check(signal(CALL, 4.0, order_type="LIMIT", limit_price=7.0), 1)


def test_fills_and_prices_book_contracts_at_their_multiplier():
    r = risk()
    r.commit(signal(CALL, 10.0), 1)
    r.on_fill(ExecutionReport(kind=ExecKind.FILL, client_order_id="c", exec_id="x1", symbol=CALL, side=Side.BUY,
                              last_qty=10.0, last_px=5.0, cum_qty=10.0, request_id="r" + CALL + "10.0"), "s")
    assert r.exposures()["gross_usd"] == pytest.approx(5_000.0)  # 10 contracts x 5 x 100
    r.on_price(CALL, 6.0, 2)
    assert r.exposures()["gross_usd"] == pytest.approx(6_000.0)
    assert r.last_price(CALL) == pytest.approx(6.0)  # quoted per share, as it came
    assert r.strategy_pnl("s") == pytest.approx(1_000.0)


def test_multipliers_default_and_override():
    m = Multipliers(100.0, {CALL: 10.0})
    assert (m.of(CALL), m.of("SPY251219P00500000"), m.of("AAPL")) == (10.0, 100.0, 1.0)
    assert RiskLimits().option_multiplier == 100.0


# ---- options sizing: notionals are per contract (premium x 100), ticks and collars per share

CHEAP = "SPY251219P00500000"  # premium 2.50 a share: one contract is 250 USD


def test_one_contract_at_a_premium_of_2_50_is_250_usd():
    r = PreTradeRisk(msgspec.structs.replace(throughput_limits(), max_notional_usd=249.0), [CHEAP], {CHEAP: 2.5}, 1e9)
    assert Reason.MAX_NOTIONAL in r.check(signal(CHEAP, 1.0), 1)
    r = PreTradeRisk(msgspec.structs.replace(throughput_limits(), max_notional_usd=250.0), [CHEAP], {CHEAP: 2.5}, 1e9)
    assert r.check(signal(CHEAP, 1.0), 1) == []
    # a notional order sized at its per-share limit price: 250 USD is one contract, 500 two
    assert r.check(signal(CHEAP, 0.0, quantity=None, notional=250.0, order_type="LIMIT", limit_price=2.5), 1) == []
    two = signal(CHEAP, 0.0, quantity=None, notional=500.0, order_type="LIMIT", limit_price=2.5)
    assert Reason.MAX_NOTIONAL in r.check(two, 1)
    assert r.multiplier(CHEAP) == 100.0 and r.multiplier("AAPL") == 1.0


@pytest.mark.parametrize("symbol, last, limit, refused", [
    (CALL, 5.0, 5.05, False),  # 5 ticks of 0.01 a share (5 USD a contract)
    (CALL, 5.0, 5.15, True),  # 15 ticks
    ("AAPL", 200.0, 200.05, False),
    ("AAPL", 200.0, 200.15, True),
])  # fmt: skip
def test_the_tick_collar_counts_ticks_per_share(symbol, last, limit, refused):
    cfg = msgspec.structs.replace(throughput_limits(), price_collar_ticks=10, price_collar_bps=10_000.0)
    r = PreTradeRisk(cfg, [symbol], {symbol: last}, 1e9)
    got = r.check(signal(symbol, 1.0, order_type="LIMIT", limit_price=limit), 1)
    assert (Reason.PRICE_COLLAR in got) is refused
