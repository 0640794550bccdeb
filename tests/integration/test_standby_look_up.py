"""A standby asks the broker (a look: no fence, no take-over) about the orders it holds without word
`_LOOK_AFTER_S` after their signal was *accepted*, not after they reached it: a batch queued for it
while it was dead (Ray restarted it) is asked about in the wake-up that takes it, so a promotion soon
after a restart has not the whole backlog to ask about (1,499-2,144 orders in a `--gap 0.2` failover
bench before this). Real ZeroMQ and Redis; the broker is a ROUTER that records what it is asked."""

from __future__ import annotations

import time

import msgspec
import zmq

from actors.engine import EngineHost
from actors.wiring import EngineWiring
from node.messages import QueryOrders, SignalBatch, broker_command_decoder, encode
from node.orders import client_order_id_for
from tests.integration.engine_pair import accepted


def test_orders_accepted_long_before_they_reach_a_standby_are_asked_about_at_once(make_config, redis_url):
    cfg = make_config()
    ctx = zmq.Context.instance()
    broker, leader = ctx.socket(zmq.ROUTER), ctx.socket(zmq.PUB)  # the broker; a leader publishing nothing
    for s in (broker, leader):
        s.setsockopt(zmq.LINGER, 0)
    broker_port = broker.bind_to_random_port("tcp://127.0.0.1")
    follow_port = leader.bind_to_random_port("tcp://127.0.0.1")
    host = EngineHost(cfg, "b", EngineWiring(redis_url=redis_url, broker_endpoint="tcp://127.0.0.1:%d" % broker_port,
                                             role="standby", follow_endpoint="tcp://127.0.0.1:%d" % follow_port))
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    try:
        push.connect(host.start()["intake"])
        run = "lookup-" + str(time.time_ns())
        # accepted 2 s ago (queued for this engine while it was down) and "just now" (a clock a minute
        # ahead: never due before 0.5 s here, however slow the machine)
        backlog = [msgspec.structs.replace(accepted(run, i), received_ns=time.time_ns() - 2_000_000_000)
                   for i in range(5)]
        fresh = [msgspec.structs.replace(accepted(run, i), received_ns=time.time_ns() + 60_000_000_000)
                 for i in range(5, 8)]
        push.send(encode(SignalBatch("1-1", backlog + fresh)))
        assert broker.poll(10_000), "the standby asked nothing"
        ask = broker_command_decoder.decode(broker.recv_multipart()[-1])
        assert type(ask) is QueryOrders and not ask.take_over
        # the backlog at once; the fresh orders are not due yet (before, every order waited 0.5 s
        # from its arrival, so the first ask named all eight)
        assert ask.client_order_ids == [client_order_id_for(a.signal_id) for a in backlog]
    finally:
        push.close(0)
        host.stop()
        broker.close(0)
        leader.close(0)
