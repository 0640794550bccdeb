"""What the harness's `duplicates` are under overload: the venue's counts beside the client's.

    python -m bench.dup_report --paced-n 8000 --rate 1000 --max-n 10000 --window 512

Drives `execnode up` (`bench.user_path.UserPathTarget`) paced, then at max rate, and before the node
stops reads both sides:

- the venue: the paper venue's book log (`<node_id>.paper.<broker>`, every order it took and every
  report it handed out): orders taken per client_order_id and per signal, reports per exec id;
- the client: every FILL report received, by (request_id, exec id); replies that found no call
  waiting (`unmatched`: the answers to sends that had already timed out), and those timeouts;
- the node: its failovers (`nae_failovers_total`).

Prints one JSON line. A duplicated order is `venue.orders_taken_twice` or `venue.signals_with_two_orders`
> 0; a duplicated fill at the venue is `venue.exec_ids_repeated` > 0; a report the client saw twice is
`client.fill_repeats` (same exec id) and a second execution of one signal `client.fills_second_exec`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections import Counter

from bench.harness import run_max_rate, run_paced, warm_up
from bench.user_path import UserPathTarget, failovers, venue_book
from node.messages import ExecKind, ExecutionReport


class _RecordingTarget(UserPathTarget):
    """The user-path target, keeping every FILL report it receives (request_id, exec id)."""

    def __init__(self, n_max: int) -> None:
        super().__init__(n_max=n_max)
        self.fill_keys: Counter[tuple[str, str, str]] = Counter()  # (request_id, exec id, client order id)

    def _on_fill(self, ev: ExecutionReport) -> None:
        self.fill_keys[(ev.request_id, ev.exec_id, ev.client_order_id)] += 1
        super()._on_fill(ev)


def venue_counts(redis_url: str, node_id: str) -> tuple[dict, set[str]]:
    """Orders and executions in the paper venue's book log(s) of `node_id` (`bench.user_path.venue_book`)."""
    book = venue_book(redis_url, node_id)
    signals: Counter[str] = Counter(coid.rpartition("-")[0] for coid in book.taken)  # NAE-<signal>-<leg>
    return {
        "orders": len(book.taken),
        "orders_taken_twice": sum(1 for vids in book.taken.values() if len(vids) > 1),
        "signals_with_two_orders": sum(1 for n in signals.values() if n > 1),
        "executions": len(book.exec_records),
        "exec_ids_repeated": sum(1 for n in book.exec_records.values() if n > 1),
        "orders_filled_twice": sum(1 for ex in book.execs.values()
                                   if sum(kind == ExecKind.FILL.value for kind, _ in ex.values()) > 1),
    }, set(book.exec_records)


def client_counts(target: _RecordingTarget, venue_execs: set[str]) -> dict:
    keys = target.fill_keys
    per_exec: Counter[str] = Counter()
    per_rid: Counter[str] = Counter()
    for (rid, exec_id, _), c in keys.items():
        per_exec[exec_id] += c
        if rid:
            per_rid[rid] += c
    client = target._client
    return {
        "fill_reports": sum(keys.values()),
        # a fill delivered again (the empty exec id: state reports a new leader restates, RECOVERED)
        "exec_id_repeats": sum(c - 1 for e, c in per_exec.items() if e),
        "without_request_id": sum(c for (rid, _, _), c in keys.items() if not rid),
        "repeats_without_request_id": sum(c for (rid, e, _), c in keys.items() if not rid and per_exec[e] > c),
        "fills_second_exec": sum(c - 1 for c in per_rid.values()),  # another exec id for one request_id
        "exec_ids_not_at_venue": sum(1 for e in per_exec if e not in venue_execs) if venue_execs else -1,
        "empty_exec_id": per_exec.get("", 0),
        "unmatched_replies": client.unmatched if client is not None else 0,
        "dropped_by_client": client.delivered.repeats if client is not None else 0,  # fills repeated, not delivered
    }


def admin_failover(target: UserPathTarget, token: str) -> bool:
    """POST /admin/failover (what an operator does): the standby takes over mid-burst."""
    import urllib.request

    req = urllib.request.Request(target.endpoints["api"].rstrip("/") + "/admin/failover", data=b"{}",
                                 headers={"x-admin-token": token, "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status == 200
    except OSError:
        return False


async def _failing_over(target: UserPathTarget, token: str, every_s: float, done: list[int]) -> None:
    while True:
        await asyncio.sleep(every_s)
        done[0 if await asyncio.to_thread(admin_failover, target, token) else 1] += 1


async def run(args: argparse.Namespace) -> dict:
    target = _RecordingTarget(n_max=args.warmup + args.paced_n + args.max_n)
    redis_url = os.environ.get("REDIS_URL", "")
    token = os.urandom(8).hex()
    os.environ["NAE_ADMIN_TOKEN"] = token  # `execnode up` reads it from its environment
    out: dict = {"load_before": os.getloadavg()[0]}
    await target.start()
    asked = [0, 0]  # failovers asked for: done, refused
    try:
        await warm_up(target, args.warmup)
        chaos = (asyncio.get_running_loop().create_task(_failing_over(target, token, args.failover_every_s, asked))
                 if args.failover_every_s > 0 else None)
        runs = [await run_paced(target, args.rate, args.paced_n, args.warmup)]
        if args.max_n:
            runs.append(await run_max_rate(target, args.max_n, args.window, args.warmup + args.paced_n))
        if chaos is not None:
            chaos.cancel()
        out["failovers_asked"] = {"done": asked[0], "refused": asked[1]}
        out["runs"] = {r.mode: {"n": r.n, "ok": r.ok, "errors": r.errors, "rejected": r.rejected, "lost": r.lost,
                                "harness_duplicates": r.duplicates,
                                "harness_repeats": r.repeats, "harness_unattributed": r.unattributed, "late_sends": r.late_sends,
                                "first_error": r.first_error} for r in runs}
        await asyncio.sleep(args.settle_s)  # late fills and late replies land before the counts
        out["venue"], venue_execs = venue_counts(redis_url, target._node_id)
        out["client"] = client_counts(target, venue_execs)
        out["failovers"] = failovers(target)
        out["load_after"] = os.getloadavg()[0]
    finally:
        await target.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.dup_report", description=__doc__.splitlines()[0])
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--paced-n", type=int, default=8_000)
    p.add_argument("--rate", type=float, default=1_000.0)
    p.add_argument("--max-n", type=int, default=10_000)
    p.add_argument("--window", type=int, default=512)
    p.add_argument("--failover-every-s", type=float, default=0.0, help="ask for a failover this often (0: never)")
    p.add_argument("--settle-s", type=float, default=5.0)
    args = p.parse_args(argv)
    if not os.environ.get("REDIS_URL"):
        print("dup_report: set REDIS_URL (the venue's book log is read from it)", file=sys.stderr)
        return 2
    print(json.dumps(asyncio.run(run(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
