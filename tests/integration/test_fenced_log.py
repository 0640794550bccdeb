"""The validator's fenced append (node.fenced_log) against real Redis: an append whose answer never
came is found in the log, or fenced off for good, and a refused append is never in the log."""

from __future__ import annotations

import secrets
import time

import pytest
import redis

from node.fenced_log import AppendOutcomeUnknown, AppendRefused, FencedLog, connect_writer


def _log(url: str, stream: str, timeout_s: float = 2.0) -> FencedLog:
    log = FencedLog(connect_writer(url, timeout_s), stream, b"A", 1_000_000, stream + ".fence")
    log.open()
    return log


def _logged(url: str, stream: str) -> list[bytes]:
    return [f[b"A"] for _, f in redis.Redis.from_url(url).xrange(stream)]


def test_append_lands_once_and_an_older_writer_is_fenced_off(redis_url):
    stream = "test.fenced." + secrets.token_hex(4)
    first = _log(redis_url, stream)
    entry = first.append(b"batch-1")
    assert entry and first.last_id == entry
    second = _log(redis_url, stream)  # a new validator takes the fence
    with pytest.raises(AppendRefused):
        first.append(b"batch-2")
    second.append(b"batch-3")
    assert _logged(redis_url, stream) == [b"batch-1", b"batch-3"]


def test_settle_finds_a_logged_batch_and_voids_a_missing_one_for_good(redis_url):
    stream = "test.fenced." + secrets.token_hex(4)
    log = _log(redis_url, stream)
    stale_generation = log.generation
    landed = log.append(b"landed")
    log.last_id = b"0"  # as if the append's answer had been lost
    found = log.settle([b"landed", b"never-sent"])
    assert found == [landed, None]
    # an append still in flight under the old generation can no longer land
    client = redis.Redis.from_url(redis_url)
    with pytest.raises(redis.ResponseError, match="FENCED"):
        client.eval("if redis.call('GET', KEYS[2]) ~= ARGV[1] then return redis.error_reply('FENCED') end "
                    "return redis.call('XADD', KEYS[1], '*', 'A', 'never-sent')", 2, stream, stream + ".fence",
                    stale_generation)
    assert _logged(redis_url, stream) == [b"landed"]
    log.append(b"after")  # the writer goes on under its new generation
    assert _logged(redis_url, stream) == [b"landed", b"after"]


def test_a_frozen_redis_gives_an_unknown_outcome_that_settle_decides(private_redis):
    stream = "test.fenced." + secrets.token_hex(4)
    log = _log(private_redis.url, stream, timeout_s=0.5)
    log.append(b"before")
    private_redis.freeze()
    try:
        with pytest.raises(AppendOutcomeUnknown):
            log.append(b"stalled")
        assert log._conn is not None and log._conn._sock is None  # dropped: its late reply is never read as the next one's
        with pytest.raises(Exception):
            log.settle([b"stalled"])  # still frozen: still unknown
    finally:
        private_redis.thaw()
    deadline = time.monotonic() + 10
    while True:
        try:
            found = log.settle([b"stalled"])
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    time.sleep(0.3)  # anything Redis still had queued has run by now
    logged = _logged(private_redis.url, stream)
    if found[0] is None:
        assert logged == [b"before"]  # voided: and it never lands later
    else:
        assert logged == [b"before", b"stalled"]


def test_a_script_redis_forgot_is_loaded_again_and_the_batch_appended_once(private_redis):
    stream = "test.fenced." + secrets.token_hex(4)
    log = _log(private_redis.url, stream)
    log.append(b"one")
    redis.Redis.from_url(private_redis.url).script_flush()  # a restarted Redis knows no scripts
    log.append(b"two")
    assert _logged(private_redis.url, stream) == [b"one", b"two"]
