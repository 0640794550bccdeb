"""The risk snapshot written off the intake loop (actors/snapshot_writer.py), against real Redis (no Ray):

- the writer saves exactly what it was handed and answers the events tip read just before;
  one snapshot at a time; a failed write (Redis away) is an outcome, and the next write works;
- a Redis that stops answering (SIGSTOP) delays the snapshot, never the validator's loop, and the
  snapshot written once Redis is back holds what the loop booked meanwhile: a new validator on the
  same Redis rebuilds that position from it (the fill is in no log, so only the snapshot can hold it).
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import redis
import zmq

from actors.risk_state import RiskStateStore
from actors.snapshot_writer import SnapshotOutcome, SnapshotWriter
from actors.validator import Validator
from nae_client.wire import ExecKind, ExecutionReport, Side, encode, event_topic
from node.risk import snapshot as risk_snapshot
from node.streams import connect_redis
from tests.chaos.test_redis_outage import free_port, start_redis


def _wait(cond, what: str, timeout_s: float = 30.0):
    end = time.monotonic() + timeout_s
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.02)


def _snap(n: int) -> risk_snapshot.RiskSnapshot:
    return risk_snapshot.RiskSnapshot(taken_ns=n, events_mark=str(n) + "-0", signals_mark="7-0", symbols=["AAPL"],
                                      unknown={"AAPL": ["o" + str(n)]}, recent_exec_ids=["e" + str(n)])


def test_the_writer_saves_what_it_was_handed_and_answers_the_events_tip(redis_url):
    node_id = "snapw-" + uuid.uuid4().hex[:8]
    events = node_id + ".events"
    r = redis.Redis.from_url(redis_url)
    tip = [r.xadd(events, {b"e": b"x"}) for _ in range(3)][-1].decode()
    store = RiskStateStore(connect_redis(redis_url), node_id, node_id + ".controls")
    writer = SnapshotWriter(store, events)
    writer.start()
    try:
        assert writer.submit(_snap(1)) is True
        assert writer.submit(_snap(2)) is False  # one at a time: refused until the first is collected
        assert writer.busy
        done: SnapshotOutcome = _wait(writer.collect, "the first write")
        assert done.ok and done.events_tip == tip and done.taken_ns == 1 and done.tip_read_ns > 0, done
        assert not writer.busy
        assert store.load_snapshot() == _snap(1)
        later = r.xadd(events, {b"e": b"y"}).decode()
        assert writer.submit(_snap(2)) is True
        done = _wait(writer.collect, "the second write")
        assert done.ok and done.events_tip == later
        assert store.load_snapshot() == _snap(2)
        assert (writer.saved, writer.failures) == (2, 0)
    finally:
        assert writer.stop()
        r.delete(events, node_id + ".risk.snapshot")


def test_a_failed_write_is_an_outcome_and_the_next_write_works(tmp_path):
    port = free_port()
    server = start_redis(port, tmp_path)
    url = "redis://127.0.0.1:" + str(port) + "/0"
    store = RiskStateStore(connect_redis(url, timeout_s=0.5), "snapw", "snapw.controls")
    writer = SnapshotWriter(store, "snapw.events")
    writer.start()
    try:
        server.terminate()
        server.wait(10)
        assert writer.submit(_snap(1))
        done = _wait(writer.collect, "the failed write")
        assert not done.ok and "StoreError" in done.error, done
        assert writer.failures == 1 and not writer.busy
        server = start_redis(port, tmp_path)
        assert writer.submit(_snap(2))
        done = _wait(writer.collect, "the write after Redis returned")
        assert done.ok and done.events_tip == "0", done  # no events stream: "0"
        assert store.load_snapshot() == _snap(2)
    finally:
        assert writer.stop()
        server.terminate()
        server.wait(10)


def _fill(exec_id: str, qty: float) -> tuple[bytes, bytes]:
    rep = ExecutionReport(kind=ExecKind.FILL, client_order_id="c-" + exec_id, exec_id=exec_id, symbol="AAPL",
                          side=Side.BUY, last_qty=qty, last_px=230.0, cum_qty=qty, ts_ns=time.time_ns(),
                          strategy_id="snap", request_id="r-" + exec_id)
    return event_topic(rep.kind, rep.strategy_id), encode(rep)


def test_a_stalled_redis_delays_the_snapshot_not_the_intake_loop(make_config, tmp_path):
    port = free_port()
    server = start_redis(port, tmp_path)
    url = "redis://127.0.0.1:" + str(port) + "/0"
    cfg = make_config()
    events_endpoint = "tcp://127.0.0.1:" + str(free_port())
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)  # stands in for the events relay: the validator's SUB connects here
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(events_endpoint)
    first = second = None
    stopped = False
    try:
        first = Validator(cfg, url, ["tcp://127.0.0.1:" + str(free_port())], events_endpoint)
        first.start(timeout_s=60)
        _wait(lambda: first.stats().snapshots_saved >= 1, "the snapshot taken at start")

        def booked(qty: float) -> bool:
            pub.send_multipart(_fill("warm", 1.0))  # the same exec id again: booked once (the SUB may join late)
            return first.positions().get("snap", {}).get("AAPL") == qty

        _wait(lambda: booked(1.0), "the first fill in risk")
        _wait(lambda: first.stats().snapshots_saved >= 2 and not first.stats().snapshot_writing,
              "the snapshot holding the first fill")

        os.kill(server.pid, signal.SIGSTOP)  # Redis stops answering: a write now waits out its socket timeout
        stopped = True
        pub.send_multipart(_fill("stalled", 4.0))
        _wait(lambda: first.positions() == {"snap": {"AAPL": 5.0}}, "the second fill in risk")
        _wait(lambda: first.stats().snapshot_writing, "a snapshot write out to the stalled Redis")
        # the loop answers at once, again and again, for longer than the write's socket timeout (2 s)
        end = time.monotonic() + 3.0
        turns = 0
        while time.monotonic() < end:
            t0 = time.monotonic()
            assert first.positions() == {"snap": {"AAPL": 5.0}}  # call_on_loop: run on the loop thread
            assert time.monotonic() - t0 < 1.0, "the loop waited on the snapshot's Redis"
            turns += 1
            time.sleep(0.05)
        assert turns >= 20

        os.kill(server.pid, signal.SIGCONT)
        stopped = False
        saved = first.stats().snapshots_saved
        _wait(lambda: first.stats().snapshots_saved > saved, "a snapshot once Redis is back")
        first.stop()
        first = None

        second = Validator(cfg, url, ["tcp://127.0.0.1:" + str(free_port())], events_endpoint)
        second.start(timeout_s=60)
        assert second.stats().restored["snapshot"] is True
        assert second.positions() == {"snap": {"AAPL": 5.0}}  # in no log: only the snapshot holds it
    finally:
        if stopped:
            os.kill(server.pid, signal.SIGCONT)
        for v in (first, second):
            if v is not None:
                v.stop()
        pub.close(0)
        ctx.term()
        server.terminate()
        server.wait(10)

