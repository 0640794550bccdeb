"""The broker adapter's reports of one wake-up go to each engine as one message, a frame a report,
in the venue's order: an order's NEW and its FILL cost the engine one wake-up, and an engine hears
only its own orders."""

from __future__ import annotations

import zmq

from actors.broker import BrokerHost
from adapters.paper.venue import PaperVenue
from node.config import PaperVenueConfig
from node.messages import ExecKind, OrderIntent, OrderType, Side, SubmitOrder, broker_event_decoder, encode


def _intent(coid: str, qty: float) -> OrderIntent:
    return OrderIntent(client_order_id=coid, signal_id="s-" + coid, request_id="r-" + coid, strategy_id="t",
                       symbol="AAPL", side=Side.BUY, order_type=OrderType.MARKET, quantity=qty)


def _dealer(endpoint: str, ident: bytes) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IDENTITY, ident)
    sock.connect(endpoint)
    return sock


def test_one_message_per_engine_per_wake_up_frames_in_venue_order():
    host = BrokerHost("p", "127.0.0.1", PaperVenue(PaperVenueConfig()))
    endpoint = host.start()["orders"]
    one, two = _dealer(endpoint, b"engine-one"), _dealer(endpoint, b"engine-two")
    try:
        one.send(encode(SubmitOrder(1, "one", _intent("NAE-d-1", 5.0), "g1")))
        assert one.poll(10_000), "no report"
        frames = one.recv_multipart()
        reports = [broker_event_decoder.decode(f) for f in frames]
        assert [(r.client_order_id, r.kind) for r in reports] == [("NAE-d-1", ExecKind.NEW), ("NAE-d-1", ExecKind.FILL)]
        two.send(encode(SubmitOrder(1, "two", _intent("NAE-d-2", 3.0), "g2")))
        assert two.poll(10_000), "no report"
        got = [broker_event_decoder.decode(f) for f in two.recv_multipart()]
        assert {r.client_order_id for r in got} == {"NAE-d-2"} and got[-1].kind is ExecKind.FILL
        assert not one.poll(200), "engine one heard engine two's order"
        assert host.stats().reports == 4
    finally:
        one.close(0)
        two.close(0)
        host.stop()
