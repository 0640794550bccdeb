"""A Nautilus group's cancel has the native engine's deadline, with a real Nautilus kernel in front of
the Schwab fake: the fake cancels the order and drops the answer (and the adapter's read after it
fails), so the kernel hears nothing. By `cancel_timeout_ms` the order is UNKNOWN (CANCEL_TIMEOUT),
never a made-up CANCELED; new risk on the symbol is refused SYMBOL_UNKNOWN_STATE by the validator;
a second cancel goes to the broker although Nautilus holds the order as PENDING_CANCEL (its answer
is the broker's CANCELED) and the symbol trades again. And against a broker that answers neither a
cancel nor a query, Nautilus's own in-flight check closes the order with a CANCELED it makes up: the
kernel publishes UNKNOWN instead."""

from __future__ import annotations

import secrets
import threading
import time

import pytest
import zmq

from adapters.engines.nautilus import NautilusEngineConfig, NautilusEngineProcess
from node.client import ExecutionClient
from node.config import BrokerConfig, EngineConfig, EngineGroupConfig
from node.messages import (
    Amend,
    AmendKind,
    CancelOrder,
    ExecKind,
    ExecutionReport,
    QueryOrders,
    Signal,
    SignalAccepted,
    SubmitOrder,
    broker_command_decoder,
    encode,
    report_decoder,
)
from node.orders import client_order_id_for, signal_id_for
from node.runtime import NodeRuntime, quiet
from node.streams import EVENTS_FIELD, connect_redis, unpack_reports
from tests.fakes.pair import schwab_account
from tests.fakes.schwab_fake import SchwabFake
from tests.waits import wait_for

PRICE = 230.0


@pytest.fixture(scope="module")
def fake():
    f = SchwabFake(account_hash="H" + secrets.token_hex(4)).start()
    f.prices = {"AAPL": PRICE}
    yield f
    f.stop()


@pytest.fixture(scope="module")
def node(ray_session, make_config, fake, database_url):
    # no sweep, no stream: only the answers the test makes happen
    with schwab_account(fake, database_url, "nae_nt_cancel_dl_", sweep_interval_ms=600_000,
                        stream=False) as (_, sc):
        cfg = make_config(
            brokers=[BrokerConfig(name="schwab", kind="schwab", schwab=sc)],
            groups=[EngineGroupConfig(name="nts", engines=[EngineConfig(name="nt", kind="nautilus")],
                                      brokers=["schwab"])],
            cancel_timeout_ms=1_000, heartbeat_misses=10,
        )  # fmt: skip
        runtime = NodeRuntime(cfg, quiet)
        runtime.start()
        yield runtime
        runtime.stop()


def reports(node, coid: str) -> list[tuple[str, str]]:
    st = node.cfg.storage
    client = connect_redis(st.redis_url)
    return [(r.kind, r.reason) for _, f in client.xrange(st.events_stream) if EVENTS_FIELD in f
            for r in unpack_reports(f) if r.client_order_id == coid]


def test_a_lost_cancel_at_a_nautilus_group_is_unknown_blocks_the_symbol_and_the_next_answer_resolves_it(node, fake):
    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    tag = "ntd-" + str(time.time_ns())
    limit = round(PRICE * 0.97, 2)  # rests

    def signal(rid: str, qty: float = 5.0, amend: Amend | None = None) -> Signal:
        return Signal(request_id=rid, strategy_id="nt-dl", timestamp=time.time(), symbol="AAPL", action="BUY",
                      quantity=qty, order_type="LIMIT", limit_price=limit, amend=amend)

    original = tag + "-a"
    coid = client_order_id_for(signal_id_for(original))
    state = lambda: {o.client_order_id: o.kind for o in node.call("broker:schwab", "orders")}.get(coid)  # noqa: E731
    kernel = lambda: node.stats()["engine:nt"]["child"]  # noqa: E731
    with ExecutionClient(node.registry["intake"], key_id, secret, timeout_s=10) as c:
        assert c.send_signal(signal(original)).status == "ACCEPTED"
        wait_for(lambda: state() == "NEW" and reports(node, coid) == [("NEW", "")])

        # the fake cancels the order and drops the answer; the adapter's read after it fails too
        fake.fail_next("cancel", "lose")
        fake.fail_next("order", "500")
        cancel = Amend(kind=AmendKind.CANCEL, original_request_id=original)
        assert c.send_signal(signal(tag + "-c1", amend=cancel)).status == "ACCEPTED"
        wait_for(lambda: ("UNKNOWN", "CANCEL_TIMEOUT") in reports(node, coid))
        assert kernel()["cancels_timed_out"] == 1
        [at_fake] = [o for o in fake.placed if o["orderType"] == "LIMIT" and o["price"] == limit]
        assert at_fake["status"] == "CANCELED"  # it IS canceled at the broker; the node does not know

        refused = []

        def blocked() -> bool:
            r = c.send_signal(signal(tag + "-n" + str(len(refused)), qty=1.0))
            refused.append(r)
            return r.status == "REJECTED" and "SYMBOL_UNKNOWN_STATE" in r.reasons

        wait_for(blocked, 10)
        assert state() == "NEW"  # the adapter's stale view
        assert reports(node, coid) == [("NEW", ""), ("UNKNOWN", "CANCEL_TIMEOUT")]  # never a made-up CANCELED

        # the broker's next answer: a second cancel goes out for the UNKNOWN order; its read shows CANCELED
        assert c.send_signal(signal(tag + "-c2", amend=cancel)).status == "ACCEPTED"
        wait_for(lambda: state() == "CANCELED")
        wait_for(lambda: reports(node, coid)[-1][0] == "CANCELED")
        wait_for(lambda: c.send_signal(signal(tag + "-after-" + str(time.time_ns()), qty=2.0)).status == "ACCEPTED", 10)
    assert [k for k, _ in reports(node, coid)] == ["NEW", "UNKNOWN", "CANCELED"]
    assert not reports(node, client_order_id_for(signal_id_for(tag + "-c2")))  # no refusal of the second cancel
    assert kernel()["cancels_timed_out"] == 1


class SwallowingBroker:
    """A broker ROUTER on a thread of its own that rests every order (NEW, never a fill), takes every
    cancel and answers none, and leaves every order query unanswered; `say(report)` sends a report
    later (from its own thread: a ZeroMQ socket is never shared)."""

    def __init__(self) -> None:
        from collections import deque

        self._ctx = zmq.Context()
        self._router = self._ctx.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.LINGER, 0)
        self.endpoint = "tcp://127.0.0.1:" + str(self._router.bind_to_random_port("tcp://127.0.0.1"))
        self.cancels: list[str] = []
        self.queries = 0
        self._ident: bytes | None = None
        self._say: deque = deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="swallowing-broker", daemon=True)
        self._thread.start()

    def say(self, report: ExecutionReport) -> None:
        self._say.append(report)

    def _run(self) -> None:
        r = self._router
        while not self._stop.is_set():
            while self._say and self._ident is not None:
                r.send_multipart((self._ident, encode(self._say.popleft())))
            if not r.poll(20):
                continue
            ident, frame = r.recv_multipart()
            self._ident = ident
            cmd = broker_command_decoder.decode(frame)
            if type(cmd) is QueryOrders:
                self.queries += 1
            elif type(cmd) is CancelOrder:
                self.cancels.append(cmd.client_order_id)
            elif type(cmd) is SubmitOrder:
                it = cmd.intent
                r.send_multipart((ident, encode(ExecutionReport(
                    kind=ExecKind.NEW, client_order_id=it.client_order_id, venue_order_id="V-" + it.client_order_id,
                    symbol=it.symbol, side=it.side, leaves_qty=it.quantity or 0.0))))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._router.close(0)
        self._ctx.term()


def test_a_cancel_nautilus_gives_up_on_is_unknown_never_a_made_up_canceled():
    """Nautilus's in-flight check closes a PENDING_CANCEL order with a CANCELED of its own making once
    its queries go unanswered (here fast: 300 ms, 2 queries of 200 ms, the deadline itself a minute
    away): the kernel publishes UNKNOWN (CANCEL_TIMEOUT), never that CANCELED; a second cancel of the
    order goes to the broker though Nautilus holds it closed; the broker's CANCELED passes through."""
    broker = SwallowingBroker()
    cfg = NautilusEngineConfig(log_level="ERROR", inflight_check_interval_ms=200, inflight_check_threshold_ms=300,
                               inflight_check_retries=2, reconciliation_startup_delay_ms=500, query_timeout_ms=200,
                               cancel_timeout_ms=60_000)
    proc = NautilusEngineProcess(cfg, broker.endpoint)
    eps = proc.start()
    ctx = zmq.Context()
    push, sub = ctx.socket(zmq.PUSH), ctx.socket(zmq.SUB)
    for s in (push, sub):
        s.setsockopt(zmq.LINGER, 0)
    push.connect(eps["intake"])
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(eps["events"])
    seen: list[ExecutionReport] = []

    def until(pred, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not pred():
            assert time.monotonic() < deadline, "timed out"
            if sub.poll(100):
                seen.append(report_decoder.decode(sub.recv_multipart()[1]))

    def accepted(rid: str, cancel_of: str | None = None) -> SignalAccepted:
        amend = Amend(kind=AmendKind.CANCEL, original_request_id=cancel_of) if cancel_of else None
        sig = Signal(request_id=rid, strategy_id="nt-mu", timestamp=time.time(), symbol="AAPL", action="BUY",
                     quantity=3.0, order_type="LIMIT", limit_price=200.0, amend=amend)
        return SignalAccepted(signal_id_for(rid), time.time_ns(), sig)

    try:
        coid = client_order_id_for(signal_id_for("mu-a"))
        kinds = lambda: [(r.kind, r.reason) for r in seen if r.client_order_id == coid]  # noqa: E731
        # the SUB joins asynchronously: send until the first NEW is heard (the kernel drops a duplicate)
        until(lambda: push.send(encode(accepted("mu-a"))) is None and ("NEW", "") in kinds())
        push.send(encode(accepted("mu-c1", cancel_of="mu-a")))
        until(lambda: ("UNKNOWN", "CANCEL_TIMEOUT") in kinds())
        assert broker.cancels == [coid] and broker.queries >= 2  # asked, never answered
        assert proc.stats().cancels_timed_out == 1
        push.send(encode(accepted("mu-c2", cancel_of="mu-a")))  # Nautilus holds it closed: sent straight
        until(lambda: broker.cancels == [coid, coid])
        broker.say(ExecutionReport(kind=ExecKind.CANCELED, client_order_id=coid, symbol="AAPL", leaves_qty=0.0))
        until(lambda: kinds()[-1:] == [("CANCELED", "")])
        assert [k for k, _ in kinds()] == ["NEW", "UNKNOWN", "CANCELED"]  # never Nautilus's own CANCELED
        cancels = {client_order_id_for(signal_id_for(r)) for r in ("mu-c1", "mu-c2")}
        assert not [r for r in seen if r.client_order_id in cancels]  # neither cancel refused
        assert proc.stats().cancels_timed_out == 1
    finally:
        proc.stop()
        push.close(0)
        sub.close(0)
        ctx.term()
        broker.close()
