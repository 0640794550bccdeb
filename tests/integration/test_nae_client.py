"""The slim client (client/nae_client) against a real node: `send_execution_signal` dicts in and out,
fills over ZeroMQ, the asyncio twin, and a client that loses its feed and reconnects: replayed from the
events stream by sequence number, it ends with every fill exactly once."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "client"))

from nae_client import AsyncExecutionClient, ExecutionClient, HttpExecutionClient, ReportLog, report_key, since_ms  # noqa: E402
from nae_client.errors import TransportError  # noqa: E402


@pytest.fixture(scope="module")
def node(module_node):
    return module_node


def _client(node, **kw) -> ExecutionClient:
    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    return ExecutionClient(node.registry["intake"], key_id, secret, timeout_s=5.0,
                           events_endpoint=node.registry["events"], **kw)


def _signal(strategy: str) -> dict:
    return {"request_id": strategy + "-" + uuid.uuid4().hex, "strategy_id": strategy, "symbol": "AAPL",
            "action": "BUY", "quantity": 1.0}


def _wait_fills(client: ExecutionClient, want: set[str], timeout_s: float = 20.0) -> dict[str, object]:
    got: dict[str, object] = {}
    deadline = time.monotonic() + timeout_s
    while not want <= set(got) and time.monotonic() < deadline:
        report = client.next_event(0.5)
        if report is not None and report.kind == "FILL":
            got[report.request_id] = report
    return got


def test_send_execution_signal_is_a_dict_in_and_out(node):
    with _client(node) as client:
        signal = {"strategy_id": "nc-dict", "symbol": "AAPL", "action": "BUY", "quantity": 1.0}  # no id, no time
        first = client.send_execution_signal(signal)
        assert first["status"] == "ACCEPTED" and first["request_id"] == signal["request_id"]
        assert first["signal_id"] and first["reasons"] == [] and first["duplicate"] is False
        again = client.send_execution_signal(signal)
        assert again["status"] == "ACCEPTED" and again["duplicate"] is True
        bad = client.send_execution_signal(dict(_signal("nc-dict"), quantity=-5))
        assert bad["status"] == "REJECTED" and bad["reasons"] == ["INVALID_NUMBER"]


def test_the_seed_http_transport_gives_the_same_verdicts(node):
    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    client = HttpExecutionClient(node.registry["api"], key_id, secret, timeout_s=10.0)
    signal = {"strategy_id": "nc-http", "symbol": "AAPL", "action": "BUY", "quantity": 1.0}
    first = client.send_execution_signal(signal)
    assert first["status"] == "ACCEPTED" and first["request_id"] == signal["request_id"]
    assert client.send_execution_signal(signal)["duplicate"] is True
    bad = client.send_execution_signal({"strategy_id": "nc-http", "symbol": "AAPL", "action": "BUY", "quantity": 0})
    assert bad["status"] == "REJECTED" and bad["reasons"]
    wrong_key = HttpExecutionClient(node.registry["api"], key_id, "not-the-secret", timeout_s=10.0)
    assert wrong_key.send_execution_signal(dict(signal, request_id="x" + uuid.uuid4().hex))["reasons"] == ["SIGNATURE_INVALID"]
    with pytest.raises(TransportError):
        HttpExecutionClient("http://127.0.0.1:9", key_id, secret, timeout_s=1.0).send_execution_signal(dict(signal))


def test_the_async_client_keeps_many_in_flight(node):
    key_id, secret = next(iter(node.cfg.signing.keys.items()))

    async def run() -> list[dict]:
        async with AsyncExecutionClient(node.registry["intake"], key_id, secret, timeout_s=10.0) as client:
            return await asyncio.gather(*(client.send_execution_signal(_signal("nc-async")) for _ in range(50)))

    replies = asyncio.run(run())
    assert [r["status"] for r in replies] == ["ACCEPTED"] * 50
    assert len({r["request_id"] for r in replies}) == 50


def test_a_client_that_reconnects_misses_no_fill(node):
    strategy = "nc-replay-" + uuid.uuid4().hex[:6]
    log = ReportLog(node.redis_url, node.cfg.storage.events_stream)
    with _client(node) as live:
        live.subscribe(strategy)  # returns once the relay holds it
        first = [_signal(strategy) for _ in range(10)]
        assert all(live.send_signal(s).status == "ACCEPTED" for s in first)
        seen = _wait_fills(live, {s["request_id"] for s in first})
        assert len(seen) == 10
        lost_at_ms = int(time.time() * 1000)
    # the feed is gone; meanwhile another sender trades for the same strategy
    second = [_signal(strategy) for _ in range(10)]
    with _client(node) as other:
        assert all(other.send_signal(s).status == "ACCEPTED" for s in second)
    want = {s["request_id"] for s in first + second}
    # back: replay from a little before the loss, drop what was already handled
    handled = {report_key(r) for r in seen.values()}
    fills: dict[str, int] = {rid: 1 for rid in seen}
    deadline = time.monotonic() + 20
    cursor = since_ms(lost_at_ms - 2_000)
    while set(fills) != want and time.monotonic() < deadline:
        for seq, report in log.read(cursor):
            cursor = seq
            if report.strategy_id != strategy or report.kind != "FILL" or report_key(report) in handled:
                continue
            handled.add(report_key(report))
            fills[report.request_id] = fills.get(report.request_id, 0) + 1
        time.sleep(0.2)
    assert set(fills) == want and set(fills.values()) == {1}, fills
    # the sequence numbers resume exactly: from any point, the rest and nothing twice
    everything = log.read(since_ms(lost_at_ms - 60_000), count=100_000)
    mine = [item for item in everything if item.report.strategy_id == strategy]
    middle = mine[len(mine) // 2].seq
    rest = [item for item in log.read(middle, count=100_000) if item.report.strategy_id == strategy]
    assert rest == mine[len(mine) // 2 + 1:]
    log.close()
