"""The paper exchange as its own process: a paper venue that outlives the node, as a real broker
does, so a kill -9 of the broker adapter or of the whole node can be checked against it.

    python -m actors.exchange --port 6100 [--config node.toml]

It serves the node's broker protocol on tcp://127.0.0.1:PORT (the broker gate in front of the
venue dedupes client order ids, as a venue would). Point a node at it with
`[broker] kind = "paper-remote"`, `exchange_endpoint = "tcp://127.0.0.1:6100"`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from actors.broker import BrokerHost
from adapters.paper.venue import PaperVenue
from node.config import load_config
from node.instruments import node_multipliers


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m actors.exchange")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--config")
    args = p.parse_args(argv)
    cfg = load_config(args.config)
    host = BrokerHost("exchange", args.host, PaperVenue(cfg.broker.paper, multipliers=node_multipliers(cfg.risk)), port=args.port)
    endpoints = host.start()
    print("paper exchange on " + endpoints["orders"], flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
