"""An HTTP flood (malformed signals answered 400, and /metrics) against the API, which runs in an actor of
its own: the supervisor's heartbeats do not share its process, so the leader is not failed over, and the
ZeroMQ intake keeps answering."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request

import pytest

from node.client import AsyncExecutionClient
from node.demo import make_signals

pytestmark = pytest.mark.chaos

FLOOD_THREADS = 8
# issue 10's flood (12,000 requests in 15 s) failed the leader over: its heartbeats, read in the API's
# process then, go unread for 3 x 20 ms at the API's full load, which these threads keep up from the
# first second, so the flood is bounded by that time, not by a count (the count took ~2 min under load)
FLOOD_S = 15.0


@pytest.fixture()
def node(fresh_node):
    return fresh_node


def flood(api: str, answers: dict[int, int], until: float) -> None:
    while time.monotonic() < until:
        for req in (urllib.request.Request(api + "/v1/signals", data=b"{}", method="POST"),
                    urllib.request.Request(api + "/metrics")):
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    status = resp.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError:
                status = 0
            answers[status] = answers.get(status, 0) + 1


async def send_while(node, signals, flooding: list[threading.Thread]) -> dict[str, str]:
    """One signal at a time for as long as the flood lasts (every one must be answered in time)."""
    key_id, secret = next(iter(node.cfg.signing.keys.items()))
    replies: dict[str, str] = {}
    async with AsyncExecutionClient(node.registry["intake"], key_id, secret, timeout_s=5.0) as client:
        for s in signals:
            if not any(t.is_alive() for t in flooding):
                break
            replies[s.request_id] = (await client.send_signal(s)).status
    return replies


def test_an_http_flood_fails_no_leader_over_and_the_intake_keeps_answering(node):
    before = node.call_supervisor("stats")["supervisor"]
    answers: list[dict[int, int]] = [{} for _ in range(FLOOD_THREADS)]
    until = time.monotonic() + FLOOD_S
    threads = [threading.Thread(target=flood, args=(node.registry["api"], a, until), daemon=True) for a in answers]
    prices = {s.symbol: s.price for s in node.cfg.broker.paper.symbols}
    signals = make_signals(200_000, prices, seed=5, bad_every=0)
    for t in threads:
        t.start()
    replies = asyncio.run(send_while(node, signals, threads))
    for t in threads:
        t.join()
    total: dict[int, int] = {}
    for a in answers:
        for status, n in a.items():
            total[status] = total.get(status, 0) + n
    assert set(replies.values()) == {"ACCEPTED"}, total
    print("HTTP flood: %d requests in %.0f s, %d signals answered meanwhile" % (sum(total.values()), FLOOD_S, len(replies)))
    assert replies and sum(total.values()) >= 2 * FLOOD_THREADS, total
    assert total.get(400, 0) + total.get(429, 0) > 0, total  # refused at the API, never at the gate
    after = node.call_supervisor("stats")["supervisor"]
    assert after["failovers"] == [] and after["epoch"] == before["epoch"] and after["leader"] == before["leader"], total
