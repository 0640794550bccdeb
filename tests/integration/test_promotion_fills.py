"""A promoted standby publishes each execution the old leader never published once, as a fill with its
exec id, and no restated FILL (reason RECOVERED, no exec id) ahead of it: a subscriber counting fills
per order saw two for one execution (the user path's "945 second FILLs", bench/user_path.py).

The old leader is played by the test: it sends the orders of signals logged in `execution.signals` to
a real broker adapter (paper venue) and stalls with their fills unpublished (what a leader does that
misses its heartbeats under load). The standby never had those signals: its promotion reads them from
the log, asks the broker, finds them filled, and books what the broker has. Real Redis, ZeroMQ, the
native engine host and the broker host, in-process (no Ray).
"""

from __future__ import annotations

import time

import pytest
import redis
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.broker import BrokerHost
from actors.engine import EngineHost
from actors.wiring import EngineWiring
from adapters.engines.native import intent_for
from adapters.paper.venue import PaperVenue
from node.config import PaperSymbol, PaperVenueConfig
from node.messages import (
    ExecKind, ExecutionReport, SignalAccepted, SubmitOrder, broker_event_decoder, encode,
)
from node.errors import StoreError
from node.followed import decode_mark, encode_mark, logged_mark_key
from node.streams import SIGNALS_FIELD, pack_batch, unpack_reports
from tests.integration.engine_pair import accepted, engine_pair, send_batch
from tests.waits import wait_for

pytestmark = pytest.mark.timeout(120)

N = 40
_FILLS = (ExecKind.FILL, ExecKind.PARTIAL_FILL)


def _accepted(i: int) -> SignalAccepted:
    return accepted("promo", i)


def _drain(sock: zmq.Socket, into: list) -> None:
    while sock.poll(0):
        into.append(broker_event_decoder.decode(sock.recv()))


def _published(client: redis.Redis, stream: str) -> list:
    """Every report the engine published, in order (each is appended to the events stream too)."""
    return [r for _, fields in client.xrange(stream) for r in unpack_reports(fields)]


def test_a_promotion_books_the_old_leaders_unpublished_fills_without_restating_them(make_config, redis_url):
    cfg = make_config()
    venue = PaperVenue(PaperVenueConfig(symbols=[PaperSymbol(symbol="AAPL", price=200.0)]))
    broker = BrokerHost("p", "127.0.0.1", venue)
    endpoint = broker.start()["orders"]
    signals = [_accepted(i) for i in range(N)]
    client = redis.Redis.from_url(redis_url)
    client.xadd(cfg.storage.signals_stream, {SIGNALS_FIELD: pack_batch([encode(a) for a in signals])})
    ctx = zmq.Context.instance()
    old_leader = ctx.socket(zmq.DEALER)
    old_leader.setsockopt(zmq.LINGER, 0)
    old_leader.connect(endpoint)
    standby = EngineHost(cfg, "b", EngineWiring(redis_url=redis_url, broker_endpoint=endpoint, role="standby"))
    try:
        # the old leader's orders reach the venue and fill; their reports go to it and no further
        taken: list = []
        for acc in signals:
            old_leader.send(encode(SubmitOrder(1, "a", intent_for(acc))))
        wait_for(lambda: _drain(old_leader, taken) or sum(r.kind is ExecKind.FILL for r in taken) == N)
        executions = {f.exec_id: f for f in venue.fills()}
        assert len(executions) == N

        standby.start()
        standby.promote(2)
        stream = cfg.storage.events_stream
        wait_for(lambda: {r.exec_id for r in _published(client, stream) if r.kind in _FILLS} >= set(executions))

        fills = [r for r in _published(client, stream) if r.kind in _FILLS]
        restated = [r for r in fills if not r.exec_id]
        assert not restated, "%d restated fills (no exec id) beside %d executions: %s" % (
            len(restated), len(executions), restated[0])
        assert sorted(r.exec_id for r in fills) == sorted(executions)  # each execution once
        by_request = {a.signal.request_id for a in signals}
        assert {r.request_id for r in fills} == by_request  # each names its signal
        assert standby.stats().recovered_adopted == N  # the path under test: the broker had them all
    finally:
        old_leader.close(0)
        standby.stop()
        broker.stop()
        client.delete(cfg.storage.signals_stream, cfg.storage.events_stream)
        client.close()


def test_a_promotion_logs_the_fills_the_old_leader_published_and_never_logged(make_config, redis_url):
    """The old leader publishes fills, the standby follows them, and the leader dies before its
    events flush: the promoted standby appends them to `execution.events` (the ledger's source)
    once each, under the exec id published, and never publishes them again."""
    cfg = make_config()
    stream = cfg.storage.events_stream
    with engine_pair(cfg, redis_url) as pair:
        client, venue, leader, standby, intakes = pair.client, pair.venue, pair.leader, pair.standby, pair.intakes
        signals = [_accepted(i) for i in range(N)]
        # the first half: published, followed and logged (the standby follows the leader by now), and
        # the leader's logged mark names the last of it, in the entry that holds it
        send_batch(client, cfg.storage.signals_stream, intakes, signals[:N // 2])
        wait_for(lambda: len({r.exec_id for r in _published(client, stream) if r.kind in _FILLS}) == N // 2
                 and len(standby._followed_execs) > 0)
        mark_key = logged_mark_key(cfg.node_id, leader.group)
        last = [r.exec_id for r in _published(client, stream) if r.kind in _FILLS][-1]
        wait_for(lambda: (decode_mark(client.get(mark_key)) or ("", ""))[1] == last)
        marked_at = decode_mark(client.get(mark_key))[0]
        assert last in {r.exec_id for r in unpack_reports(client.xrange(stream, marked_at, marked_at)[0][1])}
        # the second half: published and followed; the leader dies before its flush (it never logs again)
        leader._flush_events = lambda: None
        send_batch(client, cfg.storage.signals_stream, intakes, signals[N // 2:])
        wait_for(lambda: len(venue.fills()) == N)
        executions = {f.exec_id for f in venue.fills()}
        wait_for(lambda: set(standby._followed_execs) >= executions)
        leader.stop()
        published = [(r.exec_id, r.client_order_id) for r in _published(client, stream) if r.kind in _FILLS]
        assert len(published) == N // 2  # the gap: half the executions published, not logged

        before = standby.published
        read_from = _reads_from(standby)
        standby.promote(2)
        wait_for(lambda: len([r for r in _published(client, stream) if r.kind in _FILLS]) >= N)

        assert read_from == [marked_at] and standby.followed_from_mark == 1  # not ~15 s of the stream back
        assert standby._logged_through == ""  # leading now: a later sweep looks back as any leader's
        assert standby.followed_logged == N // 2

        fills = [r for r in _published(client, stream) if r.kind in _FILLS]
        assert sorted(r.exec_id for r in fills) == sorted(executions)  # each execution once, the venue's id
        assert {r.request_id for r in fills} == {a.signal.request_id for a in signals}
        assert standby.published == before  # none published again to subscribers


def _reads_from(host: EngineHost) -> list[str]:
    """The entries the engine's reads of `execution.events` from a logged mark start at, as made;
    a read by time fails the test."""
    starts: list[str] = []
    exec_ids_from = host._log.exec_ids_from

    def spy(entry_id, wanted, page=500):
        starts.append(entry_id)
        return exec_ids_from(entry_id, wanted, page)

    def by_time(*_args, **_kw):
        raise AssertionError("read by time, not from the logged mark")

    host._log.exec_ids_from, host._log.exec_ids_since = spy, by_time
    return starts


def _followed_fill(i: int) -> ExecutionReport:
    return ExecutionReport(kind=ExecKind.FILL, client_order_id="NAE-f" + str(i), exec_id="X-" + str(i),
                           strategy_id="s" + str(i % 3), last_qty=1.0, last_px=200.0, cum_qty=1.0,
                           ts_ns=time.time_ns())


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(logged=st.lists(st.booleans(), min_size=1, max_size=40), per_entry=st.integers(1, 7),
       pending=st.integers(0, 3))
def test_a_promotion_appends_the_followed_fills_the_stream_lacks_once_in_order(
        make_config, redis_url, logged, per_entry, pending):
    """Whatever the old leader logged of what it published (any subset, in entries of any size):
    the promotion puts exactly the rest in its next events flush, in the order followed, ahead of
    what it had pending; every followed exec id is then known logged (never logged again)."""
    cfg = make_config()
    host = EngineHost(cfg, "b", EngineWiring(redis_url=redis_url, broker_endpoint="tcp://127.0.0.1:1",
                                             role="standby"))
    client = host._open_streams()
    try:
        fills = [_followed_fill(i) for i in range(len(logged))]
        in_stream = [encode(f) for f, was in zip(fills, logged) if was]
        for at in range(0, len(in_stream), per_entry):
            host._log.append(in_stream[at:at + per_entry])
        for f in fills:
            host._followed_execs[f.exec_id] = False
            host._followed_fills.keep(f)
        ahead = [encode(_followed_fill(1000 + i)) for i in range(pending)]
        host._pending_events = list(ahead)

        host._log_followed_fills()

        assert host._pending_events == [encode(f) for f, was in zip(fills, logged) if not was] + ahead
        assert host.followed_logged == logged.count(False)
        assert all(host._followed_execs[f.exec_id] for f in fills) and not host._followed_fills
    finally:
        client.delete(cfg.storage.events_stream)
        client.close()


_MARKS = ("none", "truthful", "garbage", "not_followed", "past_it")


def _host_with_mark(cfg, redis_url: str, role: str) -> tuple[EngineHost, redis.Redis, str]:
    """An engine host in `role` with its streams open (no loop, no broker), its Redis client and its
    group's logged-mark key."""
    host = EngineHost(cfg, "b", EngineWiring(redis_url=redis_url, broker_endpoint="tcp://127.0.0.1:1", role=role))
    return host, host._open_streams(), logged_mark_key(cfg.node_id, host.group)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=st.integers(0, 12), after=st.lists(st.booleans(), max_size=12), per_entry=st.integers(1, 5),
       mark=st.sampled_from(_MARKS), garbage=st.binary(max_size=30))
def test_a_logged_mark_changes_where_a_promotion_reads_never_what_it_appends(
        make_config, redis_url, before, after, per_entry, mark, garbage):
    """The old leader logged every fill up to and including the one its mark names (`before` + 1), then
    any subset of the rest (`after`), in entries of any size. Whatever the mark (none, truthful, bytes
    that do not parse, an exec id this standby never followed, an entry past the one holding it), the
    promotion appends exactly the fills the stream lacks, in order; it reads from the mark only when
    the mark is truthful."""
    cfg = make_config()
    host, client, key = _host_with_mark(cfg, redis_url, "standby")
    try:
        logged = [True] * (before + 1) + after
        fills = [_followed_fill(i) for i in range(len(logged))]
        in_stream = [(f, encode(f)) for f, was in zip(fills, logged) if was]
        entry_of: dict[str, str] = {}
        for at in range(0, len(in_stream), per_entry):
            chunk = in_stream[at:at + per_entry]
            entry = host._log.append([p for _, p in chunk]).decode()
            entry_of.update((f.exec_id, entry) for f, _ in chunk)
        named = fills[before].exec_id
        value = {"none": None, "truthful": encode_mark(entry_of[named], named), "garbage": garbage,
                 "not_followed": encode_mark(entry_of[named], "X-never"),
                 "past_it": encode_mark(str(int(host._log.tip().split("-")[0]) + 1) + "-0", named)}[mark]
        if value is not None:
            client.set(key, value)
        for f in fills:
            host._followed_execs[f.exec_id] = False
            host._followed_fills.keep(f)

        host._log_followed_fills()

        assert host._pending_events == [encode(f) for f, was in zip(fills, logged) if not was]
        assert host.followed_from_mark == (1 if mark == "truthful" else 0)
    finally:
        client.delete(cfg.storage.events_stream, key)
        client.close()


def test_a_promotion_by_a_logged_mark_sweeps_for_unfollowed_fills_from_the_marks_entry(make_config, redis_url):
    """A promotion that went by a truthful logged mark asks the stream about the broker's fills it
    never followed from the mark's entry on (it followed the old leader through the mark), not up to
    5,000 entries back; one without a mark reads back as before. After the promotion, back to that."""
    cfg = make_config()
    host, client, key = _host_with_mark(cfg, redis_url, "standby")
    try:
        named, later, never, before = (_followed_fill(i) for i in range(4))
        host._log.append([encode(before)])  # published by an engine this one did not follow, before the mark
        marked_at = host._log.append([encode(named)]).decode()
        host._log.append([encode(later)])  # the old leader's last flush: not followed here
        host._followed_fills.keep(named)
        host._followed_execs[named.exec_id] = False
        assert host._logged_exec_ids([before, later, never]) == {before.exec_id, later.exec_id}  # no mark: read back
        client.set(key, encode_mark(marked_at, named.exec_id))
        host._log_followed_fills()
        assert host._logged_through == marked_at and host.followed_from_mark == 1
        newest = host._log.newest
        host._log.newest = lambda *a, **k: pytest.fail("read back, not from the mark's entry")
        assert host._logged_exec_ids([before, later, never]) == {later.exec_id}  # `before`: a repeat at worst
        host._log.newest = newest
    finally:
        client.delete(cfg.storage.events_stream, key)
        client.close()


def test_a_promoted_engine_writes_no_mark_of_an_earlier_term(make_config, redis_url):
    """A mark an engine made in an earlier term as leader and never wrote is dropped when it is
    promoted: the new term's flushes write only marks of what the new term appended."""
    cfg = make_config()
    with engine_pair(cfg, redis_url) as pair:
        client, standby = pair.client, pair.standby
        written: list[bytes] = []
        append = standby._log.append_packed

        def spy(packed, also=None, hash_changes=None, mark=None):
            if mark is not None:
                written.append(mark[1])
            return append(packed, also, hash_changes, mark)

        standby._log.append_packed = spy
        standby.call_on_loop(lambda: setattr(standby, "_logged_mark", encode_mark("1-0", "X-earlier-term")))
        standby.promote(2)
        send_batch(client, cfg.storage.signals_stream, pair.intakes, [_accepted(i) for i in range(6)])
        wait_for(lambda: written)
        assert all(decode_mark(m)[1] != "X-earlier-term" for m in written), written


def test_a_leaders_mark_names_only_what_an_answered_append_holds(make_config, redis_url, monkeypatch):
    """The mark is made from the entry id an append answered, and written with the next flush (alone,
    when nothing else is pending); an append that fails leaves both the mark and the execution's
    candidacy as they were, and so does a flush whose events were dropped (no later mark passes them)."""
    cfg = make_config()
    host, client, key = _host_with_mark(cfg, redis_url, "leader")
    try:
        fill = _followed_fill(1)
        host._pending_events, host._last_exec = [encode(fill)], fill.exec_id
        append = host._log.append_packed
        monkeypatch.setattr(host._log, "append_packed", lambda *a, **k: (_ for _ in ()).throw(StoreError("down")))
        host._flush_events()
        assert host._logged_mark == b"" and host._last_exec == fill.exec_id and client.get(key) is None
        monkeypatch.setattr(host._log, "append_packed", append)
        host._flush_events()
        entry = host._log.tip()
        assert host._logged_mark == encode_mark(entry, fill.exec_id) and client.get(key) is None
        assert host._has_events_to_flush()  # the mark alone is a reason to flush
        host._flush_events()
        assert decode_mark(client.get(key)) == (entry, fill.exec_id) and host._logged_mark == b""
        assert host._log.tip() == entry  # the mark alone appends no entry
        assert not host._has_events_to_flush()

        # events dropped while Redis was away (past the bound): no mark passes them again
        monkeypatch.setattr("actors.engine._MAX_PENDING_EVENTS", 1)
        dropped, kept = _followed_fill(2), _followed_fill(3)
        host._pending_events, host._last_exec = [encode(dropped), encode(kept)], kept.exec_id
        monkeypatch.setattr(host._log, "append_packed", lambda *a, **k: (_ for _ in ()).throw(StoreError("down")))
        host._flush_events()
        assert host._pending_events == [encode(kept)] and host.events_dropped == 1
        monkeypatch.setattr(host._log, "append_packed", append)
        host._flush_events()
        assert host._logged_mark == b"" and decode_mark(client.get(key)) == (entry, fill.exec_id)
    finally:
        client.delete(cfg.storage.events_stream, key, host._checkpoint_key)
        client.close()


def test_an_unreadable_stream_appends_every_followed_fill(make_config):
    """Redis not answering the read: every followed fill goes in the next flush (a repeat the ledger
    dedupes by exec id, never a loss)."""
    cfg = make_config()
    host = EngineHost(cfg, "b", EngineWiring(redis_url="redis://127.0.0.1:1/0", broker_endpoint="tcp://127.0.0.1:1",
                                             role="standby"))
    host._open_streams().close()
    fills = [_followed_fill(i) for i in range(5)]
    for f in fills:
        host._followed_fills.keep(f)
    host._log_followed_fills()
    assert host._pending_events == [encode(f) for f in fills]
