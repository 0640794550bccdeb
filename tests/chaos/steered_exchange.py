"""The paper exchange of `actors.exchange` with prices the test moves: a line `SYMBOL PRICE` on its stdin
sets that symbol's mid from the next tick on (end of stdin, SIGTERM or SIGINT stop it).

    python tests/chaos/steered_exchange.py --port 6100 --config exchange.toml

A test of resting orders across a kill needs the price to reach them after the kill, however slow the
restart was: a random walk may have left every resting order behind by then (it did, on a loaded CI
host). With `volatility_bps = 0` the price stays where the test put it, so the orders rest until the
test crosses some of them, at the moment its scenario needs fills. A test helper, never the product.
"""

from __future__ import annotations

import argparse
import queue
import signal
import sys
import threading

from actors.broker import BrokerHost
from adapters.paper.venue import PaperVenue
from node.config import PaperVenueConfig, load_config
from node.messages import ExecutionReport


class SteeredVenue(PaperVenue):
    """A paper venue whose mids the test sets; the moves are applied on the venue's own thread."""

    def __init__(self, cfg: PaperVenueConfig) -> None:
        super().__init__(cfg)
        self._moves: queue.SimpleQueue[tuple[str, float]] = queue.SimpleQueue()

    def move(self, symbol: str, price: float) -> None:
        """From any thread: `symbol`'s mid is `price` from the next tick on."""
        self._moves.put((symbol, price))

    def advance(self, now_ns: int) -> list[ExecutionReport]:
        while True:
            try:
                symbol, price = self._moves.get_nowait()
            except queue.Empty:
                break
            self._step(now_ns)  # the ticks up to now at the old price
            self._books[symbol].path.reset(price)
        return super().advance(now_ns)


def _read_moves(venue: SteeredVenue, done: threading.Event) -> None:
    for line in sys.stdin:
        parts = line.split()
        if len(parts) == 2:
            venue.move(parts[0], float(parts[1]))
    done.set()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="steered_exchange.py")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--config")
    args = p.parse_args(argv)
    venue = SteeredVenue(load_config(args.config).broker.paper)
    host = BrokerHost("exchange", "127.0.0.1", venue, port=args.port)
    endpoints = host.start()
    print("paper exchange on " + endpoints["orders"], flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    threading.Thread(target=_read_moves, args=(venue, done), daemon=True).start()
    done.wait()
    host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
