"""Time in force at the paper venue: DAY/GTC rest, IOC cancels what did not fill at once, FOK
fills whole at once or not at all."""

from __future__ import annotations

import pytest

from adapters.paper.venue import FOK, IOC, PaperVenue
from node.config import PaperSymbol, PaperVenueConfig
from node.messages import ExecKind, OrderIntent, OrderType, Side, TimeInForce

T0 = 1_700_000_000_000_000_000


def venue() -> PaperVenue:
    # 100 shares a level, 1 bp apart, no drift: a buy limit 2 bp over the mid reaches 2 levels (200)
    return PaperVenue(PaperVenueConfig(symbols=[PaperSymbol(symbol="X", price=100.0, volatility_bps=0.0, top_size=100.0)]))


def order(qty: float, tif: TimeInForce, limit: float = 100.02) -> OrderIntent:
    return OrderIntent(client_order_id="c-" + tif + str(qty), signal_id="s", request_id="r", strategy_id="t",
                       symbol="X", side=Side.BUY, order_type=OrderType.LIMIT, quantity=qty, limit_price=limit,
                       time_in_force=tif)


def run(v: PaperVenue, it: OrderIntent):
    v.submit(it, T0)
    return [r for r in v.advance(T0) if r.client_order_id == it.client_order_id]  # what happened at once


@pytest.mark.parametrize("tif", [TimeInForce.DAY, TimeInForce.GTC])
def test_day_and_gtc_rest_their_remainder(tif):
    reps = run(venue(), order(500, tif))
    assert reps[-1].kind is ExecKind.PARTIAL_FILL and reps[-1].cum_qty == 200


def test_ioc_cancels_the_remainder():
    v = venue()
    reps = run(v, order(500, TimeInForce.IOC))
    assert [r.kind for r in reps][-1] is ExecKind.CANCELED and reps[-1].reason == IOC and reps[-1].cum_qty == 200
    assert v.positions() == {"X": 200}


@pytest.mark.parametrize("qty,filled", [(500, 0), (150, 150)])
def test_fok_all_or_nothing(qty, filled):
    v = venue()
    reps = run(v, order(qty, TimeInForce.FOK))
    if filled:
        assert reps[-1].kind is ExecKind.FILL and reps[-1].cum_qty == qty
    else:
        assert [r.kind for r in reps] == [ExecKind.NEW, ExecKind.CANCELED] and reps[-1].reason == FOK
        assert v.positions() == {}
