"""node.logs: secrets never reach a log line (text or JSON, message, args or traceback), JSON lines
parse, repeats are limited."""

import io
import json
import logging

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.config import ApiConfig, LogFormat, LoggingConfig, NodeConfig, SigningConfig, StorageConfig
from node.logs import RepeatLimiter, configure, lifecycle, logger, mask, secrets_of

KEY = "k3y-s3cret-0123456789abcdef"
TOKEN = "admin-t0ken-fedcba9876543210"
DB_PW = "pg-pa55w0rd-xyz"
REDIS_PW = "r3dis-pa55"


def cfg(tmp_path, fmt=LogFormat.TEXT) -> NodeConfig:
    return NodeConfig(
        data_dir=str(tmp_path),
        signing=SigningConfig(keys={"optimus": KEY}),
        api=ApiConfig(admin_token=TOKEN),
        storage=StorageConfig(redis_url="redis://:" + REDIS_PW + "@127.0.0.1:6379/0",
                              database_url="postgresql://nae:" + DB_PW + "@db:5432/nae"),
        logging=LoggingConfig(format=fmt),
    )


@pytest.mark.parametrize("fmt", [LogFormat.TEXT, LogFormat.JSON])
def test_no_secret_in_any_line(tmp_path, fmt):
    c = cfg(tmp_path, fmt)
    stream = io.StringIO()
    configure(c, stream=stream)
    log = logger("test")
    log.info("starting with %s and token %s", c.signing.keys, TOKEN)
    log.warning("store %s unreachable", c.storage.database_url)
    try:
        raise ConnectionError("cannot reach " + c.storage.redis_url + " with key " + KEY)
    except ConnectionError as exc:
        log.error("loop error", exc_info=exc)
    lifecycle(log, "start", redis=c.storage.redis_url, token=TOKEN)
    for text in (stream.getvalue(), (tmp_path / "node.log").read_text()):
        assert text.count("\n") >= 4
        for secret in (KEY, TOKEN, DB_PW, REDIS_PW):
            assert secret not in text
        assert "***" in text and "ConnectionError" in text
        if fmt is LogFormat.JSON:
            lines = [json.loads(line) for line in text.splitlines()]
            assert {"ts", "level", "logger", "pid", "msg"} <= set(lines[0])
            assert "exc" in lines[2] and "Traceback" in lines[2]["exc"]
            assert lines[3]["event"] == "start"


def test_secrets_of_finds_every_kind(tmp_path):
    assert set(secrets_of(cfg(tmp_path))) == {KEY, TOKEN, DB_PW, REDIS_PW}


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=4, max_size=40).filter(lambda s: "*" not in s and "@" not in s),
       st.text(max_size=60).filter(lambda s: "@" not in s), st.text(max_size=60).filter(lambda s: "@" not in s))
def test_mask_removes_any_secret_anywhere(secret, before, after):
    assert secret not in mask(before + secret + after, [secret])


@given(st.from_regex(r"[a-z]{1,8}://[a-z]{0,6}:[^@\s/]{1,20}@[a-z.]{1,12}(:[0-9]{1,5})?/[a-z]{0,6}", fullmatch=True))
def test_any_url_password_is_masked(url):
    pw = url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    masked = mask("url " + url + " end")
    assert masked == "url " + url.replace(":" + pw + "@", ":***@", 1) + " end"


def test_repeat_limiter_counts_what_it_suppressed():
    now = [0.0]
    limiter = RepeatLimiter(10.0, clock=lambda: now[0])
    assert limiter.allow("E") == 0
    assert [limiter.allow("E") for _ in range(5)] == [None] * 5
    assert limiter.allow("F") == 0  # another key is its own
    now[0] = 10.5
    assert limiter.allow("E") == 5


def test_configure_twice_does_not_double_lines(tmp_path):
    c = cfg(tmp_path)
    stream = io.StringIO()
    configure(c, stream=stream)
    configure(c)  # same config: nothing changes
    logger("x").info("once")
    assert stream.getvalue().count("once") == 1
    assert logging.getLogger("nae").propagate is False
    other = msgspec.structs.replace(c, logging=LoggingConfig(file=""))
    configure(other, stream=io.StringIO())
    logger("x").info("no file")
    assert "no file" not in (tmp_path / "node.log").read_text()
