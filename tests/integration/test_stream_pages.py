"""Reads of a stream go to Redis a page at a time (`node.streams.READ_PAGE`).

Redis runs one command at a time: one XREVRANGE of 5,000 event batches (a promotion's, or the
reconciler's, look for fills logged already) held it 2.2 s on a loaded host (its slow log), and every
intake append behind it was refused STORE_UNAVAILABLE (10,830 in one 8-kill run at load 12).
"""

from __future__ import annotations

import secrets

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.streams import EVENTS_FIELD, StreamLog

N = 1_050


@pytest.fixture(scope="module")
def log(redis_url):
    client = redis.Redis.from_url(redis_url)
    stream = "test.pages." + secrets.token_hex(4)
    pipe = client.pipeline(transaction=False)
    for i in range(N):
        pipe.xadd(stream, {EVENTS_FIELD: b"x" * (i % 7)}, id="%d-0" % (1_000 + i))
    pipe.execute()
    yield StreamLog(client, stream, EVENTS_FIELD, 100_000)
    client.delete(stream)
    client.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(since=st.integers(0, 1_000 + N + 5), count=st.integers(1, N + 20), page=st.integers(1, 300))
def test_newest_in_pages_is_one_read_of_the_same_bounds(log, since, count, page):
    asked = []
    xrevrange = log._client.xrevrange

    def spy(name, max="+", min="-", count=None):
        asked.append(count)
        return xrevrange(name, max=max, min=min, count=count)

    log._client.xrevrange = spy
    try:
        got = log.newest(since, count, page)
    finally:
        log._client.xrevrange = xrevrange
    assert got == xrevrange(log.stream, max="+", min=str(since), count=count)
    assert max(asked) <= page
