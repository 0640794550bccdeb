"""Failover time: kill -9 the active engine during a paced signal stream, K times, and measure
kill -> first order submitted by the new leader (the broker records the first send of each epoch),
beside Ray's own restart of the killed actor (kill -> its heartbeat back, as a standby).

    python -m bench.failover_report [--kills 50] [--rate 1000] [--json]
        [--random SEED]                 # random kills: the supervisor (1 in 10), else the leader
                                        # (4 in 5) or a standby, random gaps
        [--supervisor-share 0.1]        # the share of random kills that hit the supervisor
        [--others-share 0.3]            # ... that hit the validator, broker, ledger, reconciler, relay, API
        [--engines nautilus,nautilus]   # engine kinds in priority order
        [--gap 1.5]                     # seconds after a killed engine is back before the next kill
        [--roles broker,reconciler]     # the other roles a random kill may hit (default: all of them)
        [--settle 30]                   # seconds, after the stream stops, for accepted signals to reach the venue
        [--leader-while-down 0.5]       # the share of supervisor and broker-adapter kills followed,
                                        # 0.3 s later, by a kill of the leader while that one is down

Also reports where the time goes (`phases_ms`: detection, decision, promotion, first order), the
time from the kill until the new leader takes new signals (`leading_again_*`: its promotion
returned; the orders it re-drives go out during the promotion) and the last promotions' steps
(`promote_marks_us`).

Also checks what must hold at every kill: zero lost, zero duplicate broker orders, nothing sent
under a fenced epoch. Lost is judged after a settle period (`--settle`): every accepted signal must
be an order at the venue by then; `late_at_venue` counts those that were still in flight when the
stream stopped, `lost_orders` names those that never came, with the leader's state of each
(`engine_states`: [state, reason], absent when the engine never had it). The reconciler's runs that
did not match (`reconcile_mismatches`: trigger, error, counts, actions) say where a HALTED came from.
"""

from __future__ import annotations

from collections import Counter

import argparse
import asyncio
import json
import os
import signal
import sys
import time

import numpy as np

from node.client import AsyncExecutionClient
from node.config import DEFAULT_GROUP, EngineConfig, load_config
from node.messages import Signal


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values), q)), 1) if values else 0.0


async def _answered(loop, fn, *args, timeout_s: float = 120.0):
    """fn(*args) once it answers (the supervisor may be restarting: Ray brings it back)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await loop.run_in_executor(None, fn, *args)
        except Exception:  # noqa: BLE001 - restarting: ask again
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


#: the actors other than engines and the supervisor a random kill may hit (`call_supervisor("pid", role)`)
OTHER_ROLES = ("validator", "broker", "ledger", "reconciler", "relay", "api")


#: how long after a supervisor or broker-adapter kill the leader is killed too (`leader_while_down`)
LEADER_AFTER_S = 0.3


async def run_failovers(runtime, kills: int, rate: float, gap_s: float = 1.5, progress=None,
                        seed: int | None = None, supervisor_share: float = 0.1, others_share: float = 0.0,
                        roles: tuple[str, ...] = OTHER_ROLES, settle_s: float = 30.0,
                        leader_while_down: float = 0.0) -> dict:
    """Drive `rate` signals/s while killing the leader `kills` times, `gap_s` apart. With `seed`:
    random kills: each one hits the supervisor (`supervisor_share`), or one of `OTHER_ROLES`
    (`others_share`: the validator, the active broker adapter, the ledger, the reconciler, the events
    relay, the HTTP API), else the leader (4 in 5) or a standby, after a random gap of 0.5x to 1.5x
    `gap_s`; failover times are measured on the leader kills, the return of any other actor (kill -> it
    answers again with a new pid, restarted by the supervisor or Ray) per role. With `leader_while_down`,
    that share of the supervisor's and the broker adapter's kills is followed `LEADER_AFTER_S` later by
    a kill of the leader while the other is down (its failover counts among the leader kills, and apart
    in `while_down_failover_ms`)."""
    import random

    rng = random.Random(seed) if seed is not None else None
    standby_kills = 0
    promoting_kills = 0  # leader kills that hit the engine a promotion under way was making the leader
    supervisor_kills = 0
    supervisor_back_ms: list[float] = []
    others_back_ms: dict[str, list[float]] = {}
    # epoch -> the new leader's first send at the broker, gathered before every kill: a killed broker
    # adapter comes back with an empty record, so the figure is read from what was seen before
    first_seen: dict[str, int] = {}
    events: dict[int, dict] = {}  # epoch -> failover event (a restarted supervisor forgets its history)
    cfg = runtime.cfg
    key_id, secret = next(iter(cfg.signing.keys.items()))
    replies: dict[str, str] = {}
    refused: Counter[str] = Counter()  # reason code -> signals refused for it
    t0 = time.monotonic()
    refused_at: Counter[tuple[str, int]] = Counter()  # (reason, second of the run) -> refused
    kill_log: list[tuple[float, str]] = []  # (second of the run, the role killed)
    sent = 0
    venue_log_errors = 0  # the paper venue's failed book-log writes, summed over the adapters killed
    restarts: dict[tuple, dict] = {}  # the supervisor's restart events (a broker's: its leaders' resync answers)
    stop = asyncio.Event()
    kill_times: list[tuple[int, int]] = []  # (kill ns, epoch before)
    while_down: list[tuple[int, int]] = []  # the leader kills while the supervisor or broker was down

    async def kill_leader_soon(pid: int, epoch: int, what: str) -> None:
        await asyncio.sleep(LEADER_AFTER_S)
        t = time.time_ns()
        os.kill(pid, signal.SIGKILL)
        kill_times.append((t, epoch))
        while_down.append((t, epoch))
        kill_log.append((round(time.monotonic() - t0, 1), "leader while " + what + " down"))
    restart_ms: list[float] = []
    loop = asyncio.get_running_loop()

    async with AsyncExecutionClient(runtime.registry["intake"], key_id, secret, timeout_s=5.0) as client:

        async def one(sig: Signal) -> None:
            for _ in range(20):
                try:
                    reply = await client.send_signal(sig)
                    replies[sig.request_id] = reply.status
                    if reply.status != "ACCEPTED":
                        refused.update(reply.reasons or ("<none>",))
                        second = int(time.monotonic() - t0)
                        refused_at.update((r, second) for r in reply.reasons or ("<none>",))
                    return
                except Exception:  # noqa: BLE001 - retried with the same request_id
                    await asyncio.sleep(0.05)

        async def stream() -> None:
            nonlocal sent
            period = 1.0 / rate
            t_next = time.perf_counter()
            tasks = []
            run = str(time.time_ns())
            while not stop.is_set():
                sig = Signal(request_id="fo-" + run + "-" + str(sent), strategy_id="failover",
                             timestamp=time.time(), symbol=("AAPL", "MSFT", "SPY")[sent % 3],
                             action="BUY" if sent % 2 else "SELL", quantity=float(1 + sent % 50))
                tasks.append(loop.create_task(one(sig)))
                sent += 1
                t_next += period
                delay = t_next - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            await asyncio.gather(*tasks)

        streamer = loop.create_task(stream())
        await asyncio.sleep(1.0)
        for k in range(kills):
            stats = await _answered(loop, runtime.stats)
            _note_first_sends(first_seen, stats)
            events.update({e["epoch"]: e for e in stats["supervisor"]["failovers"]})
            restarts.update({(e.get("role"), e.get("took_ms")): e for e in stats["supervisor"].get("restarts", [])})
            log_errors_now = ((stats.get("broker") or {}).get("venue") or {}).get("book_log_errors", 0)
            epoch = stats["supervisor"]["epoch"]
            # while a promotion is under way the group's leader is still the dead one: the engine it
            # makes the leader is the one to kill (killing the old one, a standby by then, was counted
            # as a leader kill whose failover was the next one, many seconds later)
            promoting = ((stats["supervisor"].get("groups") or {}).get(DEFAULT_GROUP) or {}).get("promoting") or ""
            leader = promoting or stats["supervisor"]["leader"]
            if rng is not None and rng.random() < supervisor_share:
                pid = await _answered(loop, runtime.call_supervisor, "pid", "supervisor")
                then = (rng.random() < leader_while_down
                        and await _answered(loop, runtime.call_supervisor, "pid", "engine:" + leader))
                kill_log.append((round(time.monotonic() - t0, 1), "supervisor"))
                t_kill = time.time_ns()
                os.kill(pid, signal.SIGKILL)
                if then:
                    await kill_leader_soon(then, epoch, "supervisor")
                supervisor_kills += 1
                while await _answered(loop, runtime.call_supervisor, "pid", "supervisor") == pid:
                    await asyncio.sleep(0.02)
                supervisor_back_ms.append((time.time_ns() - t_kill) / 1e6)
                if progress:
                    progress("kill %d/%d: supervisor (back in %.0f ms)" % (k + 1, kills, supervisor_back_ms[-1]))
                await asyncio.sleep(gap_s * rng.uniform(0.5, 1.5))
                continue
            if rng is not None and rng.random() < others_share / max(1e-9, 1.0 - supervisor_share):
                role = rng.choice(roles)
                if role == "broker":
                    venue_log_errors += log_errors_now
                kill_log.append((round(time.monotonic() - t0, 1), role))
                then = None
                if role == "broker" and rng.random() < leader_while_down:
                    pid = await _answered(loop, runtime.call_supervisor, "pid", "engine:" + leader)
                    then = loop.create_task(kill_leader_soon(pid, epoch, "broker"))
                back = await _kill_and_wait_back(loop, runtime, role)
                if then is not None:
                    await then
                if back is not None:
                    others_back_ms.setdefault(role, []).append(back)
                if progress:
                    progress("kill %d/%d: %s (back in %s ms)" % (k + 1, kills, role, "%.0f" % back if back else "-"))
                await asyncio.sleep(gap_s * rng.uniform(0.5, 1.5))
                continue
            victim = leader
            if rng is not None and rng.random() < 0.2:
                standbys = [r.split(":", 1)[1] for r, v in stats.items()
                            if r.startswith("engine:") and isinstance(v, dict) and v.get("role") == "standby"]
                if standbys:
                    victim = rng.choice(standbys)
                    standby_kills += 1
            pid = await _answered(loop, runtime.call_supervisor, "pid", "engine:" + victim)
            kill_log.append((round(time.monotonic() - t0, 1), "leader" if victim == leader else "standby"))
            t_kill = time.time_ns()
            os.kill(pid, signal.SIGKILL)
            if victim == leader:
                kill_times.append((t_kill, epoch))
                promoting_kills += bool(promoting)
            leader = victim
            # Ray's own restart: until the killed engine answers again
            t_restart = None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                await asyncio.sleep(0.02)
                try:
                    new_pid = await loop.run_in_executor(None, runtime.call_supervisor, "pid", "engine:" + leader)
                except Exception:  # noqa: BLE001 - still restarting
                    continue
                if new_pid != pid:
                    t_restart = time.time_ns()
                    break
            if t_restart is not None:
                restart_ms.append((t_restart - t_kill) / 1e6)
            if progress:
                progress("kill %d/%d: %s (epoch %d)" % (k + 1, kills, leader, epoch))
            await asyncio.sleep(gap_s if rng is None else gap_s * rng.uniform(0.5, 1.5))
        await asyncio.sleep(1.0)
        stop.set()
        await streamer
        await asyncio.sleep(1.0)

    stats = await _answered(loop, runtime.stats)
    _note_first_sends(first_seen, stats)
    restarts.update({(e.get("role"), e.get("took_ms")): e for e in stats["supervisor"].get("restarts", [])})
    venue_log_errors += ((stats.get("broker") or {}).get("venue") or {}).get("book_log_errors", 0)
    first = first_seen
    failover_ms = []
    phases: dict[str, list[float]] = {"detect": [], "decide": [], "promote": [], "first_order": []}
    # kill -> the promotion returned: from then on the new leader takes new signals (the re-driven
    # orders go out during the promotion, so the first order at the broker comes sooner)
    leading_again_ms: list[float] = []
    events.update({e["epoch"]: e for e in stats["supervisor"]["failovers"]})
    while_down_ms = []
    # a restarted supervisor's promotions (reason `resume`): its restart (detected_ns) -> promoted
    resume_promoted_ms = [round((e["promoted_ns"] - e["detected_ns"]) / 1e6, 1)
                          for e in events.values() if e.get("reason") == "resume"]
    slowest: list[dict] = []  # each failover's story, the slowest kept for the report
    t0_ns = time.time_ns() - int((time.monotonic() - t0) * 1e9)  # the run's start on the wall clock
    for t_kill, epoch in kill_times:
        nxt = min((e for e in first if int(e) > epoch), default=None, key=int)
        if nxt is not None:
            failover_ms.append((first[nxt] - t_kill) / 1e6)
            slowest.append(_failover_story(failover_ms[-1], (t_kill - t0_ns) / 1e9, events.get(epoch + 1), t_kill,
                                           kill_log))
            if (t_kill, epoch) in while_down:
                while_down_ms.append(failover_ms[-1])
        event = events.get(epoch + 1)
        if event is not None and event.get("detected_ns") and nxt is not None:
            # kill -> noticed -> the supervisor acts -> promote returns; first order: after the kill
            phases["detect"].append((event["detected_ns"] - t_kill) / 1e6)
            phases["decide"].append((event["started_ns"] - event["detected_ns"]) / 1e6)
            phases["promote"].append((event["promoted_ns"] - event["started_ns"]) / 1e6)
            phases["first_order"].append((first[nxt] - event["started_ns"]) / 1e6)
            leading_again_ms.append((event["promoted_ns"] - t_kill) / 1e6)
    accepted = [rid for rid, st in replies.items() if st == "ACCEPTED"]
    from node.orders import client_order_id_for, signal_id_for

    wanted = {client_order_id_for(signal_id_for(rid)): rid for rid in accepted}
    orders, missing_at_stop, missing = await _settle_at_venue(loop, runtime, set(wanted), settle_s)
    at_broker = {o.client_order_id for o in orders}
    lost = len(missing)
    engine_states: dict = {}
    if missing:
        try:
            engine_states = await _answered(loop, runtime.call, "engine", "order_states", sorted(missing)[:50])
        except Exception as exc:  # noqa: BLE001 - a Nautilus leader keeps no such table
            engine_states = {"error": type(exc).__name__}
    mismatches = await _reconcile_mismatches(cfg.storage.database_url)
    return {
        "kills": kills,
        "standby_kills": standby_kills,
        "promoting_kills": promoting_kills,
        "supervisor_kills": supervisor_kills,
        "supervisor_back_p50_ms": pct(supervisor_back_ms, 50),
        "supervisor_back_p99_ms": pct(supervisor_back_ms, 99),
        "other_kills": {role: len(v) for role, v in sorted(others_back_ms.items())},
        "other_back_p50_ms": {role: pct(v, 50) for role, v in sorted(others_back_ms.items())},
        "other_back_max_ms": {role: round(max(v), 1) for role, v in sorted(others_back_ms.items())},
        "rate_per_s": rate,
        "sent": sent,
        "replied": len(replies),
        "accepted": len(accepted),
        "refused_reasons": dict(refused.most_common()),
        # when: each reason's refusals as [from second, to second, count] spans of the run, beside the kills
        "refused_spans": refusal_spans(refused_at),
        "kill_log": kill_log,
        "run_s": round(time.monotonic() - t0, 1),
        "unknown_symbols_at_end": (stats.get("validator") or {}).get("unknown_symbols"),
        "validator_reasons_at_end": (stats.get("validator") or {}).get("reasons"),  # since its last start
        "reconciler_at_end": {k: v for k, v in (stats.get("reconciler") or {}).items()
                              if k in ("runs", "mismatched_runs", "discrepancies", "last_matched", "last_trigger")},
        "lost": lost + (sent - len(replies)),
        "unanswered": sent - len(replies),
        "late_at_venue": len(missing_at_stop) - lost,  # in flight when the stream stopped, at the venue after
        "settle_s": settle_s,
        "lost_orders": [[c, wanted[c]] for c in sorted(missing)[:50]],
        "engine_states": engine_states,
        "reconcile_mismatches": mismatches,
        "venue_log_errors": venue_log_errors,
        # each broker restart the supervisor recorded: its leaders' resync (re-drive) answers
        "broker_resyncs": [e.get("resync") for e in restarts.values() if e.get("role") == "broker"],
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "duplicate_broker_orders": len(orders) - len(at_broker),
        "broker_orders": len(orders),
        "refused_stale_epoch": stats["broker"]["refused_stale"],
        "refused_stale_from": stats["broker"].get("stale_from", {}),
        "refused_duplicate_ids": stats["broker"]["refused_duplicate"],
        "failovers": len(events),
        "failover_p50_ms": pct(failover_ms, 50),
        "failover_p99_ms": pct(failover_ms, 99),
        "failover_max_ms": round(max(failover_ms), 1) if failover_ms else 0.0,
        "failover_samples": len(failover_ms),
        "slowest_failovers": sorted(slowest, key=lambda x: -x["ms"])[:5],
        # the leader kills made while the supervisor or the broker adapter was down (`leader_while_down`)
        "while_down_failover_ms": [round(v, 1) for v in while_down_ms],
        # a restarted supervisor's promotion of a group whose leader's process was gone: ms after its restart
        "resume_promoted_after_ms": resume_promoted_ms,
        "leading_again_p50_ms": pct(leading_again_ms, 50),
        "leading_again_p99_ms": pct(leading_again_ms, 99),
        "ray_restart_p50_ms": pct(restart_ms, 50),
        "ray_restart_p99_ms": pct(restart_ms, 99),
        # where the time goes (p50 / p99, ms): kill -> detected; detected -> the failover starts;
        # start -> promote returned; start -> the new leader's first order at the broker
        "phases_ms": {name: [pct(v, 50), pct(v, 99)] for name, v in phases.items()},
        "promote_marks_us": [dict(e.get("marks_us") or {}, asked=e.get("asked"), call_us=e.get("call_us"),
                                  log_entries_read=e.get("log_entries_read"))
                             for e in stats["supervisor"]["failovers"]],
        # each step of the promotions inside the engine (ms, p50 / p99 / max): from `marks_us`, which
        # are times since the promotion started, each step's own time
        "promote_steps_ms": promote_steps(stats["supervisor"]["failovers"]),
    }


def promote_steps(failovers: list[dict]) -> dict[str, list[float]]:
    """Per step of the engine's promotion (`marks_us`: cumulative, in order), p50 / p99 / max in ms."""
    steps: dict[str, list[float]] = {}
    for entry in failovers:
        last = 0
        for name, at_us in (entry.get("marks_us") or {}).items():
            if name == "queued":  # the wait before the loop ran the call: not part of the cumulative clock
                steps.setdefault(name, []).append(at_us / 1000)
                continue
            steps.setdefault(name, []).append((at_us - last) / 1000)
            last = at_us
    return {name: [pct(v, 50), pct(v, 99), round(max(v), 1)] for name, v in steps.items()}


async def _venue_orders(loop, runtime, ids: list[str], chunk: int = 20_000) -> list:
    """The venue's orders of `ids`, asked `chunk` ids at a time (the whole venue of a 100-kill run,
    ~500k orders, did not come back through Ray within its 30 s on a slow machine)."""
    out: list = []
    for i in range(0, len(ids), chunk):
        out += await _answered(loop, runtime.call, "broker", "orders_of", ids[i : i + chunk])
    return out


async def _settle_at_venue(loop, runtime, wanted: set[str], settle_s: float, every_s: float = 2.0):
    """The venue's orders once every `wanted` id is among them or `settle_s` passed; the ids missing at
    the first look (in flight when the stream stopped) and those still missing at the end (lost).
    Each look after the first asks only for the ids still missing."""
    deadline = time.monotonic() + settle_s
    first_missing: set[str] | None = None
    orders: list = []
    missing = set(wanted)
    while True:
        got = await _venue_orders(loop, runtime, sorted(missing))
        orders += got
        missing -= {o.client_order_id for o in got}
        if first_missing is None:
            first_missing = set(missing)
        if not missing or time.monotonic() >= deadline:
            return orders, first_missing, missing
        await asyncio.sleep(every_s)


async def _reconcile_mismatches(database_url: str | None, limit: int = 40) -> list[dict]:
    """The reconciler's runs that did not match, oldest first (its rows in the run's database)."""
    if not database_url:
        return []
    import asyncpg

    try:
        conn = await asyncpg.connect(database_url, timeout=5.0)
    except Exception as exc:  # noqa: BLE001 - the report says so
        return [{"error": type(exc).__name__}]
    try:
        if not await conn.fetchval("SELECT to_regclass('reconciliation_runs') IS NOT NULL"):
            return []  # a node without its ledger: no reconciler ran against this database
        rows = await conn.fetch("SELECT run_id, trigger, error, counts, actions, in_flight, started_at "
                                "FROM reconciliation_runs WHERE NOT matched ORDER BY started_at LIMIT $1", limit)
        details = await conn.fetch("SELECT run_id, symbol, strategy_id, ledger_qty, broker_qty, action, detail "
                                   "FROM reconciliation_results WHERE NOT matched AND run_id = ANY($1::text[])",
                                   [r["run_id"] for r in rows])
    finally:
        await conn.close()
    rows_of: dict[str, list] = {}
    for d in details:
        rows_of.setdefault(d["run_id"], []).append(
            [d["symbol"], d["strategy_id"], d["ledger_qty"], d["broker_qty"], d["action"], str(d["detail"])[:400]])
    return [{"at": r["started_at"].isoformat(), "trigger": r["trigger"], "error": r["error"],
             "counts": json.loads(r["counts"]) if isinstance(r["counts"], str) else r["counts"],
             "actions": json.loads(r["actions"]) if isinstance(r["actions"], str) else r["actions"],
             "in_flight": r["in_flight"], "results": rows_of.get(r["run_id"], [])[:6]} for r in rows]


def refusal_spans(refused_at: Counter[tuple[str, int]], gap_s: int = 2) -> dict[str, list[list[int]]]:
    """Per reason, the seconds with refusals merged into [from, to, count] spans (a gap of more than
    `gap_s` seconds without one starts a new span)."""
    out: dict[str, list[list[int]]] = {}
    for (reason, second), n in sorted(refused_at.items()):
        spans = out.setdefault(reason, [])
        if spans and second - spans[-1][1] <= gap_s:
            spans[-1][1] = second
            spans[-1][2] += n
        else:
            spans.append([second, second, n])
    return out


def _note_first_sends(first_seen: dict[str, int], stats: dict) -> None:
    """Keep each epoch's first send at the broker (the adapter's record, if it is up now)."""
    broker = stats.get("broker")
    record = broker.get("first_submit_ns") if isinstance(broker, dict) else None
    if isinstance(record, dict):
        for epoch, ns in (record.get(DEFAULT_GROUP) or {}).items():
            first_seen.setdefault(epoch, ns)


def _failover_story(ms: float, at_s: float, event: dict | None, t_kill: int, kill_log: list) -> dict:
    """One failover for the report: when (s into the run), how long, why the supervisor acted, when
    it noticed, and the kill before it (a leader killed near another kill is the slow case)."""
    before = [k for k in kill_log if k[0] < at_s - 0.05]
    story: dict = {"ms": round(ms, 1), "at_s": round(at_s, 1),
                   "after": [before[-1][1], round(at_s - before[-1][0], 1)] if before else None}
    if event is not None:
        story["reason"] = event.get("reason")
        if event.get("detected_ns"):
            story["detect_ms"] = round((event["detected_ns"] - t_kill) / 1e6, 1)
            story["promote_ms"] = round((event["promoted_ns"] - event["started_ns"]) / 1e6, 1)
    return story


async def _kill_and_wait_back(loop, runtime, role: str, timeout_s: float = 60.0) -> float | None:
    """kill -9 `role`'s process, then wait until the role answers with another pid: ms, or None
    when the node runs no such actor (e.g. no ledger) or it did not come back within `timeout_s`."""
    try:
        pid = await _answered(loop, runtime.call_supervisor, "pid", role, timeout_s=10.0)
    except Exception:  # noqa: BLE001 - not part of this node
        return None
    t_kill = time.time_ns()
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        try:
            new_pid = await loop.run_in_executor(None, runtime.call_supervisor, "pid", role)
        except Exception:  # noqa: BLE001 - still restarting
            continue
        if new_pid != pid:
            return (time.time_ns() - t_kill) / 1e6
    return None


def failover_config(base=None, kinds: tuple[str, ...] = ("native", "native", "native")):
    from node.cli import demo_config

    cfg = demo_config(base or load_config(None))
    import msgspec

    import uuid

    from bench.node_target import STREAMS

    engines = [EngineConfig(name=kind + "-" + "abcdefgh"[i], kind=kind) for i, kind in enumerate(kinds)]
    node_id = "failover-" + uuid.uuid4().hex[:8]  # its own controls, keys, streams and paper account
    storage = msgspec.structs.replace(cfg.storage, **{k: node_id + "." + getattr(cfg.storage, k) for k in STREAMS})
    return msgspec.structs.replace(cfg, engines=engines, node_id=node_id, storage=storage)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.failover_report")
    p.add_argument("--kills", type=int, default=50)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--json", action="store_true")
    p.add_argument("--random", type=int, metavar="SEED", help="random kills: leader or standby, random gaps")
    p.add_argument("--gap", type=float, default=1.5, help="seconds between a killed engine's return and the next kill")
    p.add_argument("--supervisor-share", type=float, default=0.1,
                   help="with --random: the share of kills that hit the supervisor (Ray restarts it)")
    p.add_argument("--others-share", type=float, default=0.0,
                   help="with --random: the share of kills that hit the validator, broker adapter, ledger, "
                        "reconciler, events relay or HTTP API")
    p.add_argument("--roles", default=",".join(OTHER_ROLES),
                   help="with --others-share: the roles those kills may hit (comma-separated)")
    p.add_argument("--settle", type=float, default=30.0,
                   help="seconds after the stream stops for every accepted signal to reach the venue")
    p.add_argument("--leader-while-down", type=float, default=0.0,
                   help="with --random: the share of supervisor and broker-adapter kills followed %.1f s later by "
                        "a kill of the leader while that one is down" % LEADER_AFTER_S)
    p.add_argument("--config", metavar="PATH", help="a node.toml whose settings (e.g. [tuning]) the node runs with")
    p.add_argument("--engines", default="native,native,native",
                   help="engine kinds in priority order (e.g. nautilus,nautilus: Nautilus always leads)")
    args = p.parse_args(argv)
    from node.runtime import NodeRuntime, stderr_progress

    from bench.node_target import OwnLedger
    from bench.user_path import drop_node_keys

    ledger = OwnLedger()  # its own ledger too: the start-up reconciliation sees only this run
    base = load_config(args.config) if args.config else None
    cfg = asyncio.run(ledger.take(failover_config(base, kinds=tuple(args.engines.split(",")))))
    runtime = NodeRuntime(cfg, stderr_progress)
    try:
        runtime.start()
        out = asyncio.run(run_failovers(runtime, args.kills, args.rate, progress=stderr_progress, seed=args.random,
                                        gap_s=args.gap, supervisor_share=args.supervisor_share,
                                        others_share=args.others_share, roles=tuple(args.roles.split(",")),
                                        settle_s=args.settle, leader_while_down=args.leader_while_down))
    finally:
        runtime.stop()
        drop_node_keys(runtime.redis_url if cfg.storage.redis_url else None, cfg.node_id)
        asyncio.run(ledger.release())
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
