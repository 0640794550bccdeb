"""The whole node on a local Ray: signals in over ZeroMQ, replies and fills out, nothing lost or doubled."""

from __future__ import annotations

import asyncio
import time
import uuid

import msgspec
import pytest

from node.client import AsyncExecutionClient, ExecutionClient
from node.demo import make_signals, play
from node.messages import ExecKind, encode
from node.reasons import Reason


@pytest.fixture(scope="module")
def node(module_node):
    return module_node


def client_for(node, **kw) -> ExecutionClient:
    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    return ExecutionClient(node.registry["intake"], key_id, secret, **kw)


def test_ten_thousand_signals_all_answered_and_filled_exactly_once(node):
    import redis

    prices = {s.symbol: s.price for s in node.cfg.broker.paper.symbols}
    signals = make_signals(10_000, prices, seed=42)
    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    before = node.stats()["broker"]["submitted"]

    async def go():
        async with AsyncExecutionClient(node.registry["intake"], key_id, secret, timeout_s=10) as c:
            return await play(c, signals, window=256, settle_s=30)

    res = asyncio.run(go())
    s = res.summary()
    assert s["sent"] == 10_000
    assert s["accepted"] + s["rejected"] == 10_000, s  # a reply for every signal
    assert s["reasons"] == {"MAX_QUANTITY": 200, "MAX_NOTIONAL": 200}, s["reasons"]
    assert s["rejected"] == 200
    assert s["lost"] == 0 and s["duplicates"] == 0 and s["timeouts"] == 0, s
    assert s["filled"] + s["canceled"] + s["venue_rejected"] == s["accepted"]
    stats = node.stats()
    assert stats["broker"]["submitted"] - before == s["accepted"]  # one broker order per accepted signal
    assert stats["broker"]["refused_duplicate"] == 0
    from node.streams import unpack_signals

    r = redis.Redis.from_url(node.redis_url)
    logged = {a.signal.request_id for _, f in r.xrange(node.cfg.storage.signals_stream) for a in unpack_signals(f)}
    accepted = {sig.request_id for sig in signals if sig.quantity != 1_000_000.0}
    assert len(accepted) == s["accepted"]
    assert {sig.request_id for sig in signals} & logged == accepted  # every ACK was logged first


def test_bad_inputs_get_reasons_and_the_node_keeps_going(node):
    with client_for(node) as c:
        def sig(**over):
            d = {"strategy_id": "s1", "symbol": "AAPL", "action": "BUY", "quantity": 10.0}
            d.update(over)
            return d

        cases = [
            (c.send_frame(b"\x93\x01\x02"), Reason.MALFORMED_FRAME),
            (c.send_frame(b"x" * (10 * 1024 * 1024)), Reason.FRAME_TOO_LARGE),
            (c.send_signal(sig(quantity=None)), Reason.SIZE_SPEC),
            (c.send_signal(sig(notional=100.0)), Reason.SIZE_SPEC),
            (c.send_signal(sig(quantity=-1.0)), Reason.INVALID_NUMBER),
            (c.send_signal(sig(quantity=1e300)), Reason.INVALID_NUMBER),
            (c.send_signal(sig(quantity="lots")), Reason.SCHEMA_INVALID),
            (c.send_signal(sig(bogus=True)), Reason.UNKNOWN_FIELD),
        ]
        for reply, reason in cases:
            assert reply.status == "REJECTED" and reason in reply.reasons, (reply, reason)
        with client_for(node) as bad:
            bad._secret = b"not-the-secret"
            assert bad.send_signal(sig()).reasons == [Reason.SIGNATURE_INVALID]
        # missing signature, stale signing time
        from node.messages import SignedSignal

        payload = msgspec.msgpack.encode(dict(sig(), request_id=uuid.uuid4().hex, timestamp=time.time()))
        unsigned = encode(SignedSignal(key_id="optimus", ts_ns=time.time_ns(), payload=payload))
        assert c.send_frame(unsigned).reasons == [Reason.SIGNATURE_MISSING]
        from node.signing import make_envelope

        stale = encode(make_envelope("optimus", c._secret, payload, time.time_ns() - 60 * 10**9))
        assert c.send_frame(stale).reasons == [Reason.STALE_TIMESTAMP]
        # and a good one still goes straight through
        t0 = time.perf_counter()
        assert c.send_signal(sig()).status == "ACCEPTED"
        assert time.perf_counter() - t0 < 2.0
    counts = node.stats()["validator"]["reasons"]
    for reason in (Reason.MALFORMED_FRAME, Reason.FRAME_TOO_LARGE, Reason.SIGNATURE_INVALID, Reason.UNKNOWN_FIELD):
        assert counts.get(reason, 0) >= 1


def test_retry_with_same_request_id_places_one_order(node):
    with client_for(node) as c:
        c.subscribe("retry")
        time.sleep(0.2)
        signal = {"request_id": "retry-" + uuid.uuid4().hex, "strategy_id": "retry", "timestamp": time.time(),
                  "symbol": "MSFT", "action": "SELL", "quantity": 5.0}
        first = c.send_signal(signal)
        again = c.send_signal(signal)
        assert first.status == again.status == "ACCEPTED"
        assert again.duplicate and again.signal_id == first.signal_id
        replay = c.send_signal(dict(signal, quantity=6.0))
        assert replay.reasons == [Reason.REPLAY]
        kinds = [ev.kind for ev in c.events(timeout_s=1.0) if ev.request_id == signal["request_id"]]
        assert kinds.count(ExecKind.FILL) == 1 and kinds.count(ExecKind.NEW) == 1


def test_discover_returns_the_events_endpoint(node):
    with client_for(node) as c:
        eps = c.endpoints()
        assert eps.events == node.registry["events"] and eps.intake == node.registry["intake"]


def test_timeout_raises_a_clear_error():
    from nae_client.errors import TransportError  # what the client raises

    with ExecutionClient("tcp://127.0.0.1:9", "k", "s", timeout_s=0.2) as c:
        with pytest.raises(TransportError, match="no reply from tcp://127.0.0.1:9 within 0.2 s"):
            c.send_signal({"strategy_id": "s", "symbol": "AAPL", "action": "BUY", "quantity": 1.0})
