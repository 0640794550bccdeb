"""Schwab's streamer against the fake's (tests/fakes/schwab_streamer.py), through schwab-py's own
StreamClient: fills booked from the stream without waiting a sweep; a stream killed mid-burst and
frames lost, with the sweep still booking every fill once; hostile frames counted and dropped."""

from __future__ import annotations

import json
import logging
import threading
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.messages import ExecKind, OrderType
from tests.integration.test_schwab_venue import (  # noqa: F401 - fixtures
    drive, ended, fake, intent, token_db,
)

FILLS = {ExecKind.FILL, ExecKind.PARTIAL_FILL}


def wait(cond, timeout_s: float = 15.0, every_s: float = 0.02) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(every_s)
    raise AssertionError("condition not met in " + str(timeout_s) + " s")


def order_id(d, coid: str) -> int:
    return int(next(r.venue_order_id for r in d.reports if r.client_order_id == coid and r.kind is ExecKind.NEW))


def resting(d, n: int, qty: float = 10.0) -> list[str]:
    """n LIMIT orders resting at the fake, each acknowledged (NEW)."""
    coids = []
    for k in range(n):
        it = intent(k, otype=OrderType.LIMIT, qty=qty, limit=99.0)
        d.venue.submit(it, time.time_ns())
        coids.append(it.client_order_id)
    d.wait_for(lambda reps: all(any(r.client_order_id == c and r.kind is ExecKind.NEW for r in reps) for c in coids))
    return coids


def assert_each_fill_once(d, fake, coids: list[str]) -> None:
    """The node's fills equal the fake's executions, exec id for exec id, each reported once."""
    ids = {order_id(d, c): c for c in coids}
    ours = [r for r in d.reports if r.kind in FILLS and r.client_order_id in coids]
    exec_ids = [r.exec_id for r in ours]
    assert len(exec_ids) == len(set(exec_ids)), "a fill reported twice"
    theirs = {str(oid) + "-" + str(a["activityId"]) + "-0" for oid in ids for a in fake.orders[oid]["orderActivityCollection"]}
    assert set(exec_ids) == theirs
    for c in coids:
        assert [r.kind for r in ours if r.client_order_id == c].count(ExecKind.FILL) == 1


def test_stream_books_a_fill_without_waiting_a_sweep(fake, drive):
    d = drive(sweep_interval_ms=60_000)  # the sweep would come a minute later: only the stream can be this quick
    wait(lambda: d.venue.stats().get("stream_up"))
    [coid] = resting(d, 1)
    oid = order_id(d, coid)
    sweeps = d.venue.stats()["sweeps"]
    fake.fill(oid, 4.0, 99.0)
    d.wait_for(lambda reps: any(r.client_order_id == coid and r.kind is ExecKind.PARTIAL_FILL for r in reps),
               timeout_s=10.0)
    fake.fill(oid, 6.0, 98.5)
    d.wait_for(ended(coid, ExecKind.FILL), timeout_s=10.0)
    stats = d.venue.stats()
    assert stats["sweeps"] == sweeps  # no sweep ran: the stream booked both
    assert stats["stream_reads"] >= 2 and stats["stream_wakeups"] >= 2
    assert_each_fill_once(d, fake, [coid])
    assert d.kinds(coid) == [ExecKind.NEW, ExecKind.PARTIAL_FILL, ExecKind.FILL]


def test_stream_killed_mid_burst_and_frames_lost_the_sweep_books_every_fill_once(fake, drive):
    d = drive(sweep_interval_ms=400, stream_reconnect_min_ms=100, stream_reconnect_max_ms=400)
    wait(lambda: d.venue.stats().get("stream_up"))
    coids = resting(d, 24)
    ids = [order_id(d, c) for c in coids]

    def burst() -> None:
        for k, oid in enumerate(ids):
            if k == 4:
                fake.streamer.drop_next(3)  # three events lost on a live stream
            if k == 8:
                fake.streamer.refuse = True  # the streamer goes down: the stream dies and cannot come back yet
                fake.streamer.kill()
            if k == 16:
                fake.streamer.refuse = False
            fake.fill(oid, 5.0, 99.0)
            fake.fill(oid, 5.0, 98.0)
            time.sleep(0.02)

    t = threading.Thread(target=burst)
    t.start()
    t.join()
    d.wait_for(lambda reps: all(ended(c, ExecKind.FILL)(reps) for c in coids), timeout_s=30.0)
    wait(lambda: d.venue.stats()["stream_connects"] >= 2)  # and the stream is back
    stats = d.venue.stats()
    assert stats["stream_disconnects"] >= 1 and fake.streamer.dropped == 3
    time.sleep(1.0)  # sweeps and stream frames keep coming: nothing more may be reported
    d.pump(0.2)
    assert_each_fill_once(d, fake, coids)


_GARBAGE_ID = st.one_of(
    st.none(), st.booleans(), st.floats(allow_nan=True), st.integers(max_value=-1),
    st.text(max_size=30).filter(lambda t: not (t.isascii() and t.isdigit())), st.lists(st.integers(), max_size=3),
    st.integers(min_value=10**21, max_value=10**30),
)
_BAD_ENTRY = st.one_of(
    st.fixed_dictionaries({"2": st.sampled_from(["ExecutionCreated", "OrderCreated", "ERROR", ""]),
                           "3": st.fixed_dictionaries({"SchwabOrderID": _GARBAGE_ID}).map(json.dumps)}),
    st.fixed_dictionaries({"2": st.just("OrderFillCompleted"), "3": st.text(max_size=40).map(lambda t: "{" + t)}),
    st.fixed_dictionaries({"2": st.just("ExecutionCreated"), "3": st.dictionaries(st.text(max_size=8), st.integers(),
                                                                                  max_size=3)}),
    st.integers(), st.text(max_size=10), st.none(),
)
#: frames no order can be read from: not JSON, not a streamer frame, entries naming no order
_HOSTILE = st.one_of(
    st.text(max_size=60).filter(lambda t: not t.lstrip().startswith("{")),
    st.binary(max_size=60).filter(lambda b: not b.lstrip().startswith(b"{")),
    st.sampled_from([
        '{"notify": [{"service": 5}]}', '{"notify": [{"nothing": 1}]}', '{"data": [{"content": []}]}',
        '{"response": [{"requestid": "x"}]}', '{"data": [7]}', '{"data": "x"}', "[1, 2]", "null", '{"a": [1]}',
        '{"data": [{"service": "LEVELONE_EQUITIES", "content": []}]}', '{"notify": [{"service": "ACCT_ACTIVITY"}]}',
    ]),
    _BAD_ENTRY.map(lambda e: json.dumps({"data": [{"service": "ACCT_ACTIVITY", "timestamp": 1, "command": "SUBS",
                                                   "content": [e]}]})),
)


def test_hostile_stream_frames_are_counted_drops_and_the_stream_carries_on(fake, drive, caplog):
    caplog.set_level(logging.WARNING, logger="nae.broker.schwab.stream")
    d = drive(sweep_interval_ms=60_000)
    wait(lambda: d.venue.stats().get("stream_up"))

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(_HOSTILE, min_size=1, max_size=4))
    def send(frames) -> None:
        before = d.venue.stats()
        for frame in frames:
            fake.streamer.send_raw(frame)

        def counted() -> bool:  # each frame a dropped frame, or an entry not read (one entry each)
            s = d.venue.stats()
            got = s["stream_dropped"] + s["stream_unreadable"] - before["stream_dropped"] - before["stream_unreadable"]
            return got >= len(frames)

        wait(counted, timeout_s=10.0, every_s=0.005)

    send()
    stats = d.venue.stats()
    assert stats["stream_connects"] == 1 and stats["stream_up"]  # never torn down by what it read
    assert any("dropped" in r.getMessage() or "not read" in r.getMessage() for r in caplog.records)
    [coid] = resting(d, 1)  # and a real event still books at once
    fake.fill(order_id(d, coid), 10.0, 99.0)
    d.wait_for(ended(coid, ExecKind.FILL), timeout_s=10.0)
    assert d.venue.stats()["sweeps"] == stats["sweeps"]
