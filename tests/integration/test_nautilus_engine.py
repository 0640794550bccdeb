"""The Nautilus engine child against a broker ROUTER that fills at once (tests/fakes/instant_broker.py):
orders through a real Nautilus kernel.

A thread plays the broker: every SubmitOrder gets NEW then FILL (unique exec_ids); QueryOrders gets
the orders it holds. Signals go in on the engine's PULL socket, reports come out on its PUB socket.
"""

from __future__ import annotations

import os
import time

import pytest
import zmq

from adapters.engines.nautilus import NautilusEngineConfig, NautilusEngineProcess
from node.messages import (
    Action,
    ExecKind,
    event_topic,
    ExecutionReport,
    OrderType,
    Signal,
    SignalAccepted,
    encode,
    report_decoder,
)
from node.orders import client_order_id_for
from node.reasons import Reason
from tests.fakes.instant_broker import InstantBroker

pytestmark = pytest.mark.timeout(120)


def _signal(i: int, **kw) -> SignalAccepted:
    fields = dict(request_id="req-" + str(i), strategy_id="strat-" + str(i % 3), timestamp=time.time(),
                  symbol=("AAPL", "MSFT", "SPY")[i % 3], action=(Action.BUY, Action.SELL)[i % 2], quantity=float(1 + i % 7))
    kind = i % 4
    if kind == 1:
        fields.update(order_type=OrderType.LIMIT, limit_price=100.25)
    elif kind == 2:
        fields.update(order_type=OrderType.STOP, stop_price=101.5)
    elif kind == 3:
        fields.update(order_type=OrderType.STOP_LIMIT, stop_price=99.5, limit_price=99.75)
    fields.update(kw)
    return SignalAccepted("%016x" % (0xA000 + i), time.perf_counter_ns(), Signal(**fields))


@pytest.fixture(scope="module")
def engine():
    broker = InstantBroker()
    # in-flight checks every 200 ms on orders silent for 300 ms, 5 asks (Nautilus's default count) before
    # it resolves one itself: an answer has ~1.5 s to come back, so a loaded box does not turn a broker
    # that answers into an UNKNOWN (with 2 asks it had ~0.6 s, and once did in a batch run)
    cfg = NautilusEngineConfig(log_level="ERROR", inflight_check_interval_ms=200, inflight_check_threshold_ms=300,
                              inflight_check_retries=5, reconciliation_startup_delay_ms=500)
    proc = NautilusEngineProcess(cfg, broker.endpoint)
    eps = proc.start()
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(eps["intake"])
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(eps["events"])
    time.sleep(0.2)  # let the SUB join before the first report is published
    yield proc, broker, push, sub
    proc.stop()
    push.close(0)
    sub.close(0)
    ctx.term()
    broker.close()


def _collect(sub: zmq.Socket, want: set[str], kinds: set[ExecKind], budget_s: float = 30.0) -> list[tuple[bytes, ExecutionReport, int]]:
    """Reports of `kinds` until every client order id in `want` has one (bounded by budget_s)."""
    got: list[tuple[bytes, ExecutionReport, int]] = []
    seen: set[str] = set()
    deadline = time.monotonic() + budget_s
    while not want <= seen and time.monotonic() < deadline:
        if not sub.poll(100):
            continue
        topic, payload = sub.recv_multipart()
        rep = report_decoder.decode(payload)
        if rep.kind in kinds:
            got.append((topic, rep, time.perf_counter_ns()))
            seen.add(rep.client_order_id)
    return got


def test_two_hundred_signals_become_two_hundred_fills_exactly_once(engine):
    proc, broker, push, sub = engine
    n = 200
    signals = [_signal(i) for i in range(n)]
    sent_ns = {}
    for acc in signals:
        sent_ns[client_order_id_for(acc.signal_id)] = time.perf_counter_ns()
        push.send(encode(acc))
    want = {client_order_id_for(a.signal_id) for a in signals}
    fills = _collect(sub, want, {ExecKind.FILL})

    coids = [rep.client_order_id for _, rep, _ in fills]
    assert sorted(coids) == sorted(want)  # every order filled, none twice
    assert len(set(r.exec_id for _, r, _ in fills)) == n
    by_coid = {client_order_id_for(a.signal_id): a for a in signals}
    for topic, rep, _ in fills:
        acc = by_coid[rep.client_order_id]
        assert rep.signal_id == acc.signal_id
        assert rep.request_id == acc.signal.request_id
        assert rep.strategy_id == acc.signal.strategy_id
        assert topic == event_topic(ExecKind.FILL, acc.signal.strategy_id)
        assert rep.cum_qty == acc.signal.quantity and rep.leaves_qty == 0.0
    submitted = [s.intent for s in broker.submits if s.intent.client_order_id in want]
    assert len(submitted) == n
    types = {it.client_order_id: it.order_type for it in submitted}
    assert types == {c: by_coid[c].signal.order_type for c in want}  # MARKET/LIMIT/STOP/STOP_LIMIT kept

    to_broker = sorted(broker.submit_ns[c] - sent_ns[c] for c in want)
    to_fill = sorted(t - sent_ns[r.client_order_id] for _, r, t in fills)
    p = lambda xs, q: xs[min(len(xs) - 1, int(q * len(xs)))] / 1000.0  # noqa: E731
    print(
        "\nnautilus engine: startup %.0f ms (ready at host %.0f ms); signal->SubmitOrder p50 %.0f us p99 %.0f us; "
        "signal->FILL on PUB p50 %.0f us p99 %.0f us (burst of %d)"
        % (proc.startup_ms, proc.ready_ms, p(to_broker, 0.5), p(to_broker, 0.99), p(to_fill, 0.5), p(to_fill, 0.99), n)
    )


def test_a_burst_beyond_one_intake_batch_loses_nothing(engine):
    proc, broker, push, sub = engine
    signals = [_signal(10_000 + i) for i in range(1_500)]  # the child drains 1,024 a batch
    for acc in signals:
        push.send(encode(acc))
    want = {client_order_id_for(a.signal_id) for a in signals}
    fills = _collect(sub, want, {ExecKind.FILL})

    assert sorted(r.client_order_id for _, r, _ in fills) == sorted(want)


def test_duplicate_signal_makes_one_broker_order(engine):
    proc, broker, push, sub = engine
    dup = _signal(1_000)
    coid = client_order_id_for(dup.signal_id)
    before = proc.stats().duplicate_signals
    push.send(encode(dup))
    push.send(encode(dup))  # same signal_id: same ClientOrderId
    fills = _collect(sub, {coid}, {ExecKind.FILL})
    push.send(encode(dup))  # again, after the order is done
    marker = _signal(1_001)
    push.send(encode(marker))  # one PUSH, one PULL: in order, so the dup was handled before this fills
    _collect(sub, {client_order_id_for(marker.signal_id)}, {ExecKind.FILL})

    assert [r.client_order_id for _, r, _ in fills] == [coid]
    assert [s.intent.client_order_id for s in broker.submits].count(coid) == 1
    assert proc.stats().duplicate_signals - before == 2


def test_notional_signal_sized_at_last_fill_or_rejected_without_price(engine):
    proc, broker, push, sub = engine
    no_price = _signal(2_000, symbol="TSLA", quantity=None, notional=5_000.0)  # nothing filled on TSLA yet
    priced = _signal(2_004, symbol="AAPL", quantity=None, notional=1_050.0)  # AAPL last filled at 101.5 (or 100.0): 10 shares
    push.send(encode(no_price))
    push.send(encode(priced))
    a, b = client_order_id_for(no_price.signal_id), client_order_id_for(priced.signal_id)
    got = {r.client_order_id: r for _, r, _ in _collect(sub, {a, b}, {ExecKind.FILL, ExecKind.REJECTED})}

    assert got[a].kind is ExecKind.REJECTED and got[a].reason == Reason.NO_PRICE
    assert got[a].request_id == no_price.signal.request_id
    assert got[b].kind is ExecKind.FILL and got[b].cum_qty == 10.0  # floor(1050 / last AAPL fill price)
    assert a not in broker.submit_ns


def test_redrive_of_an_order_the_broker_already_filled_resolves_from_the_broker(engine):
    proc, broker, push, sub = engine
    redrive = _signal(4_000, symbol="AAPL")  # MARKET BUY 4: nothing here can price it but the broker
    coid = client_order_id_for(redrive.signal_id)
    qty = redrive.signal.quantity
    # filled before this engine's life; the broker stays silent on a resubmit and lists its fill when asked
    broker.fills[coid] = ExecutionReport(kind=ExecKind.FILL, client_order_id=coid, venue_order_id="V-old", exec_id="X-old",
                                         symbol="AAPL", last_qty=qty, last_px=187.25, cum_qty=qty, avg_px=187.25)
    broker.filled[coid] = qty
    push.send(encode(redrive))
    got = _collect(sub, {coid}, {ExecKind.FILL, ExecKind.REJECTED, ExecKind.UNKNOWN}, budget_s=20.0)

    assert [r.kind for _, r, _ in got] == [ExecKind.FILL]  # from Nautilus's in-flight check + QueryOrders
    fill = got[0][1]
    assert (fill.exec_id, fill.last_px, fill.cum_qty) == ("X-old", 187.25, qty)  # the broker's fill, not one inferred
    assert fill.signal_id == redrive.signal_id
    assert [s.intent.client_order_id for s in broker.submits].count(coid) == 1
    # the in-flight check asked about this one order, not for the whole book
    assert any(q.client_order_ids == [coid] and q.since_ns > 0 and q.query_id > 0 for q in broker.asked)


def test_redrive_resolves_from_the_brokers_order_line_when_it_lists_no_fill(engine):
    proc, broker, push, sub = engine
    redrive = _signal(4_001, symbol="MSFT")  # LIMIT SELL at 100.25: priced at its limit
    coid = client_order_id_for(redrive.signal_id)
    broker.filled[coid] = redrive.signal.quantity  # a broker that keeps its orders' lines but no fill history
    push.send(encode(redrive))
    got = _collect(sub, {coid}, {ExecKind.FILL, ExecKind.REJECTED, ExecKind.UNKNOWN}, budget_s=20.0)

    assert [r.kind for _, r, _ in got] == [ExecKind.FILL]
    assert got[0][1].cum_qty == redrive.signal.quantity and got[0][1].last_px == 100.25
    assert [s.intent.client_order_id for s in broker.submits].count(coid) == 1


def test_order_the_broker_never_answers_is_unknown_never_rejected(engine):
    proc, broker, push, sub = engine
    lost = _signal(5_000, symbol="MSFT")
    coid = client_order_id_for(lost.signal_id)
    broker.silent.add(coid)  # taken, never answered: the broker does not list it either
    push.send(encode(lost))
    first = _collect(sub, {coid}, {ExecKind.FILL, ExecKind.REJECTED, ExecKind.UNKNOWN}, budget_s=20.0)
    broker.release.append(coid)  # the broker's word arrives late
    late = _collect(sub, {coid}, {ExecKind.FILL, ExecKind.REJECTED}, budget_s=20.0)

    assert [r.kind for _, r, _ in first] == [ExecKind.UNKNOWN]  # Nautilus resolved it locally: not REJECTED
    assert first[0][1].reason == Reason.TIMEOUT and first[0][1].signal_id == lost.signal_id
    assert [r.kind for _, r, _ in late] == [ExecKind.FILL]  # the broker's own report, passed through
    assert late[0][1].exec_id.startswith("X") and late[0][1].request_id == lost.signal.request_id


def test_fractional_quantity_denied_by_nautilus_risk_engine(engine):
    proc, broker, push, sub = engine
    frac = _signal(3_000, quantity=2.5)  # equities trade whole shares here
    coid = client_order_id_for(frac.signal_id)
    push.send(encode(frac))
    got = _collect(sub, {coid}, {ExecKind.REJECTED, ExecKind.FILL})

    assert [r.kind for _, r, _ in got] == [ExecKind.REJECTED]
    assert got[0][1].reason.startswith("DENIED")
    assert coid not in broker.submit_ns


def test_stop_and_kill_leave_no_child_process():
    broker = InstantBroker()
    try:
        proc = NautilusEngineProcess(NautilusEngineConfig(log_level="ERROR"), broker.endpoint)
        proc.start()
        pid = proc.pid
        assert proc.alive()
        assert proc.stop() is True  # clean: stop_async + dispose in the child
        assert not proc.alive()
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

        proc.start()
        pid = proc.pid
        proc.kill()
        assert not proc.alive()
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    finally:
        broker.close()
