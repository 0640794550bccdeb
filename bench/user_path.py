"""The user's path as a benchmark target: `execnode up` in its own process, driven like Optimus.

`bench.node_target` builds the node inside the bench's own process and sends one strategy over six
symbols; a user runs `execnode up` (a separate process tree: the CLI, Ray, the actors) and sends an
Optimus stream. This target does what the user does:

- writes a TOML config under a temp data dir: the defaults of `execnode up`, a fresh signing key,
  free ports, the risk limits opened as the bench opens them (`throughput_limits`, large equity),
  and `SYMBOLS` priced paper symbols; REDIS_URL / DATABASE_URL reach the node through the
  environment exactly as they reach `execnode up` (else it starts embedded servers under the dir);
- starts `execnode up --config <that file>` as a subprocess and waits for its endpoints.json;
- sends, through the public asyncio client, `STRATEGIES` strategies x `SYMBOLS` symbols, every
  order type (market by quantity and by notional, marketable limit, resting stop and stop-limit),
  every action, each with `risk_meta`; a fill is awaited for the orders that must fill (market and
  marketable limit), never for the resting stops;
- stops the node with SIGINT (what Ctrl-C does) and kills it if it is not down in 60 s.

`blocking_round_trips` adds what a script using the blocking `ExecutionClient` sees.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import msgspec
import numpy as np

from node.client import AsyncExecutionClient, ExecutionClient
from node.config import PaperSymbol, load_config
from node.migrations import database_url_for
from node.stream_claim import STREAM_FIELDS
from node.messages import Action, ExecKind, ExecutionReport, OrderType, RiskMeta, Signal, encode
from node.orders import client_order_id_for, signal_id_for

#: every stream a node uses, named under the bench node id (one left at its default would be claimed
#: by this run and shared with other nodes: node.stream_claim)
STREAMS = STREAM_FIELDS
STRATEGIES = 50
SYMBOLS = 24
START_TIMEOUT_S = 180.0
_ACTIONS = (Action.BUY, Action.SELL, Action.BUY_TO_OPEN, Action.SELL_TO_CLOSE, Action.SELL_TO_OPEN, Action.BUY_TO_CLOSE)
_META = RiskMeta(max_slippage=0.01, max_exposure=1e12, max_position_pct=1.0)


def drop_node_keys(redis_url: str | None, node_id: str) -> None:
    """Delete a bench node's streams and keys (`<node_id>.*`) from a shared Redis after its run."""
    if not redis_url:
        return
    import redis

    r = redis.Redis.from_url(redis_url)
    try:
        keys = list(r.scan_iter(match=node_id + ".*", count=1_000))
        if keys:
            r.delete(*keys)
    finally:
        r.close()


def paper_symbols(n: int = SYMBOLS) -> list[PaperSymbol]:
    """`n` symbols: the six defaults first, then synthetic tickers priced 20..500."""
    base = list(load_config(None, env={}).broker.paper.symbols)
    extra = [PaperSymbol(symbol="SYM" + str(k), price=float(20 + (37 * k) % 480)) for k in range(n - len(base))]
    return (base + extra)[:n]


def user_config(data_dir: str, key_id: str, secret: str) -> dict:
    """The overrides a user would write in the node's TOML: data dir, key, free ports, the bench's
    risk openings (only the limits `throughput_limits` changes), equity and the paper symbols."""
    from node.cli import DEMO_EQUITY_USD
    from node.risk.config import throughput_limits

    base = load_config(None, env={})
    node_id = "bench-" + uuid.uuid4().hex[:8]
    default_risk, opened = msgspec.to_builtins(base.risk), msgspec.to_builtins(throughput_limits(base.risk))
    return {
        "data_dir": data_dir,
        "node_id": node_id,  # its own Redis keys (breaker states), streams and Ray names: nothing shared with other nodes
        # a bench measures on whatever Redis REDIS_URL names (CI's keeps nothing on disk): accept it
        "storage": {**{k: node_id + "." + getattr(base.storage, k) for k in STREAMS}, "allow_volatile_redis": True},
        "dashboard": False,  # Ray's dashboard is optional (its packages may be absent); a bench needs no UI
        "equity_usd": max(base.equity_usd, DEMO_EQUITY_USD),
        "signing": {"keys": {key_id: secret}},
        "intake": {"port": 0},
        "api": {"port": 0},
        "risk": {k: v for k, v in opened.items() if default_risk.get(k) != v},
        "broker": {"paper": {"symbols": [{"symbol": s.symbol, "price": s.price} for s in paper_symbols()]}},
    }


def to_toml(tables: dict) -> str:
    """The TOML of `user_config`'s shape: scalars, nested tables, arrays of tables (no None)."""
    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)  # a JSON string is a valid TOML basic string
        return repr(float(v)) if isinstance(v, float) else str(int(v))

    out: list[str] = []

    def emit(prefix: str, d: dict) -> None:
        nested = []
        for k, v in d.items():
            if isinstance(v, dict) or (isinstance(v, list) and v and isinstance(v[0], dict)):
                nested.append((k, v))
            elif v is not None:
                out.append(json.dumps(k) + " = " + value(v))
        for k, v in nested:
            name = prefix + json.dumps(k)
            if isinstance(v, dict):
                out.append("\n[" + name + "]")
                emit(name + ".", v)
            else:
                for item in v:
                    out.append("\n[[" + name + "]]")
                    emit(name + ".", item)

    emit("", tables)
    return "\n".join(out) + "\n"


def optimus_signal(i: int, run: str, now: float, symbols: list[PaperSymbol]) -> tuple[Signal, bool]:
    """Signal i of the stream and whether it must fill (market, marketable limit) or rests (stops)."""
    sym = symbols[(i // STRATEGIES) % len(symbols)]
    action = _ACTIONS[i % len(_ACTIONS)]
    buy = action in (Action.BUY, Action.BUY_TO_OPEN, Action.BUY_TO_CLOSE)
    kind = i % 10
    fields: dict = {
        "request_id": "u" + run + "-" + str(i), "strategy_id": "strat" + str(i % STRATEGIES),
        "timestamp": now, "symbol": sym.symbol, "action": action, "risk_meta": _META,
        "model_id": "optimus-bench", "confidence": 0.7,
    }
    if kind == 9:
        return Signal(**fields, notional=round(sym.price * 3, 2)), True
    fields["quantity"] = float(1 + i % 20)
    if kind in (5, 6):  # marketable limit: fills at once
        px = sym.price * (1.01 if buy else 0.99)
        return Signal(**fields, order_type=OrderType.LIMIT, limit_price=round(px, 2)), True
    if kind == 7:  # a stop away from the market (inside the 5% price collar): rests
        px = sym.price * (1.03 if buy else 0.97)
        return Signal(**fields, order_type=OrderType.STOP, stop_price=round(px, 2)), False
    if kind == 8:
        px = sym.price * (1.03 if buy else 0.97)
        return Signal(**fields, order_type=OrderType.STOP_LIMIT, stop_price=round(px, 2),
                      limit_price=round(px, 2)), False
    return Signal(**fields), True


class UserPathTarget:
    """`execnode up` in a subprocess, driven through the public asyncio client (a `bench.harness.Target`)."""

    name = "user_path"

    def __init__(self, n_max: int = 20_000, code_dir: str | None = None) -> None:
        self._n_max = n_max
        self._code_dir = code_dir  # run `execnode up` from this checkout (bench.ab: two builds, one run)
        self._dir: tempfile.TemporaryDirectory | None = None
        self._proc: subprocess.Popen | None = None
        self._db: tuple[str, str] | None = None  # (server URL, scratch database name)
        self._node_id = ""
        self.endpoints: dict[str, str] = {}
        self.key_id = "bench"
        self.secret = uuid.uuid4().hex + uuid.uuid4().hex
        self._client: AsyncExecutionClient | None = None
        self._payloads: list[tuple[str, bytes]] = []
        self._index: dict[str, int] = {}
        self._must_fill = np.zeros(n_max, dtype=bool)
        self._sent_ns = np.zeros(n_max, dtype=np.int64)
        self._fill_ns = np.zeros(n_max, dtype=np.int64)
        self._acked_resting = np.zeros(n_max, dtype=bool)  # resting stops ACKed: not to fill
        self._listener: asyncio.Task | None = None
        self._accepted = self._rejected = self._errors = self._fills = self._dup_fills = 0
        self._exec_ids: set[str] = set()
        self._repeats = self._unattributed = 0  # a fill report seen again (same exec id); one without request_id
        self._first_fill: dict[int, tuple[str, str]] = {}  # signal -> the (exec id, reason) of its first FILL
        #: second FILLs of a signal, by "<first's reason or exec> -> <second's>" (what they were)
        self.dup_kinds: Counter[str] = Counter()
        self._second_exec_ids: set[str] = set()  # the exec ids of those second FILLs
        self.venue: dict | None = None  # `venue_check`'s answer

    async def start(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="nae-bench-user-")
        data_dir = self._dir.name
        path = Path(data_dir) / "node.toml"
        config = user_config(data_dir, self.key_id, self.secret)
        self._node_id = config["node_id"]
        path.write_text(to_toml(config))
        log = open(Path(data_dir) / "node.log", "wb")
        env = dict(os.environ)
        if self._code_dir:  # its imports, and its Ray workers' (they inherit the driver's sys.path)
            env["PYTHONPATH"] = self._code_dir
        if env.get("DATABASE_URL"):  # a scratch database: a node's ledger and start-up reconciliation see only this run
            from node.migrations import create_database

            self._db = env["DATABASE_URL"], (await create_database(env["DATABASE_URL"], "nae_bench_"))[0]
            env["DATABASE_URL"] = database_url_for(*self._db)
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from node.cli import main; sys.exit(main())", "--config", str(path), "up", "--no-dashboard"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=self._code_dir,
        )
        ep_file = Path(data_dir) / "endpoints.json"
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ep_file.exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("execnode up did not come up: " + (Path(data_dir) / "node.log").read_text()[-1500:])
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.1)  # the file is written in one call; let it land
        self.endpoints = json.loads(ep_file.read_text())
        self._client = AsyncExecutionClient(self.endpoints["intake"], self.key_id, self.secret, timeout_s=10.0)
        await self._client.subscribe(kinds=[ExecKind.FILL])
        await asyncio.sleep(0.3)
        run, now, symbols = uuid.uuid4().hex[:8], time.time(), paper_symbols()
        for i in range(self._n_max):
            sig, fills = optimus_signal(i, run, now, symbols)
            self._payloads.append((sig.request_id, encode(sig)))
            self._index[sig.request_id] = i
            self._must_fill[i] = fills
        self._listener = asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        client = self._client
        while True:
            ev = await client.next_event(0.5)
            if ev is not None and ev.kind is ExecKind.FILL:
                self._on_fill(ev)

    def _on_fill(self, ev: ExecutionReport) -> None:
        """Fills by exec id, as the client contract says (README "The client"): a report whose exec id
        was delivered already, or a state restated (no exec id) for a signal already filled, is a
        repeat, counted apart; a second exec id for a signal already filled is a true duplicate (a
        second execution); a fill without a request_id cannot be matched to its signal (counted)."""
        i = self._index.get(ev.request_id)
        if not ev.exec_id:  # a state restated (reason RECOVERED): no execution; a fill only if none came
            if i is None or self._fill_ns[i]:
                self._repeats += 1
                return
        elif ev.exec_id in self._exec_ids:
            self._repeats += 1
            return
        else:
            self._exec_ids.add(ev.exec_id)
        if i is None:
            self._unattributed += 1
            return
        if self._fill_ns[i]:
            self._dup_fills += 1
            first = self._first_fill.get(i, ("", ""))
            self.dup_kinds[_fill_kind(*first) + " -> " + _fill_kind(ev.exec_id, ev.reason)] += 1
            if ev.exec_id:
                self._second_exec_ids.add(ev.exec_id)
            return
        self._fill_ns[i] = time.perf_counter_ns()
        self._first_fill[i] = (ev.exec_id, ev.reason)
        self._fills += 1

    async def send(self, i: int) -> None:
        rid, payload = self._payloads[i]
        self._sent_ns[i] = time.perf_counter_ns()
        reply = await self._client.send_payload(rid, payload)
        if reply.status == "ACCEPTED":
            self._accepted += 1
            if not self._must_fill[i]:
                self._fills += 1  # a resting stop: its ACK is all this run waits for
                self._acked_resting[i] = True
        elif reply.status == "REJECTED":
            self._rejected += 1
            raise RuntimeError("rejected: " + ",".join(reply.reasons))
        else:
            self._errors += 1
            raise RuntimeError("error: " + reply.detail)

    async def wait_fills(self, timeout_s: float, indices: range | None = None) -> np.ndarray:
        """Fill latencies (ns) of the signals in `indices` that must fill; resting stops count as
        filled on their ACK (they are not in the returned latencies)."""
        sent = self._sent_ns
        idx = np.asarray(indices if indices is not None else np.nonzero(sent)[0])
        idx = idx[self._must_fill[idx] & (sent[idx] > 0)]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and np.count_nonzero(self._fill_ns[idx]) < len(idx):
            await asyncio.sleep(0.05)
        filled = idx[self._fill_ns[idx] > 0]
        return self._fill_ns[filled] - sent[filled]

    def resting(self, indices: range) -> int:
        """How many of the signals in `indices` were ACKed and rest (stops): the harness does not
        count them as lost for having no fill."""
        return int(np.count_nonzero(self._acked_resting[indices.start:indices.stop]))

    def processes(self) -> dict[int, str]:
        """pid -> role of the node's processes (bench.cpu_budget): `execnode up`'s process tree, and the
        configured Redis and the scratch database's PostgreSQL backends when they run on this machine."""
        from bench.cpu_budget import node_processes

        root = self._proc.pid if self._proc is not None else os.getpid()
        return node_processes(root, self.endpoints, os.environ.get("REDIS_URL", ""), self._db[1] if self._db else "")

    def counts(self) -> dict:
        return {
            "sent": int(np.count_nonzero(self._sent_ns)),
            "accepted": self._accepted,
            "rejected": self._rejected,
            "lost": self._accepted - self._fills,
            # a second execution for one signal; a report repeated (same exec id) is not one
            "duplicates": self._dup_fills,
            # reports seen again (same exec id): dropped by the client (`delivered.repeats`) or here
            "repeats": self._repeats + (self._client.delivered.repeats if self._client else 0),
            "unattributed": self._unattributed,
            # answers to sends that had timed out already (counted as errors there): not duplicates
            "late_replies": self._client.unmatched if self._client else 0,
        }

    def blocking_round_trips(self, n: int) -> dict:
        """p50/p99 of `n` sequential sends through the blocking `ExecutionClient` (fresh ids)."""
        lat = np.zeros(n, dtype=np.int64)
        run, now, symbols = uuid.uuid4().hex[:8], time.time(), paper_symbols()
        ok = 0
        with ExecutionClient(self.endpoints["intake"], self.key_id, self.secret, timeout_s=10.0) as client:
            for k in range(n):
                sig, _ = optimus_signal(k, "k" + run, now, symbols)
                t0 = time.perf_counter_ns()
                reply = client.send_signal(sig)
                lat[k] = time.perf_counter_ns() - t0
                ok += reply.status == "ACCEPTED"
        p50, p99 = np.percentile(lat, (50.0, 99.0))
        return {"n": n, "ok": int(ok), "reply_p50_us": round(float(p50) / 1e3, 1), "reply_p99_us": round(float(p99) / 1e3, 1)}

    async def venue_check(self, settle_s: float = 60.0) -> dict:
        """What the venue and the ledger hold per signal sent (`venue_counts`), the ledger read once it
        has every execution the venue made for them, or has not moved for 5 s, or after `settle_s`
        (it lags the venue under load). Kept as `self.venue`."""
        sent = self._sent_ns
        coids = {client_order_id_for(signal_id_for(rid)): k for k, (rid, _) in enumerate(self._payloads) if sent[k]}
        redis_url = os.environ.get("REDIS_URL", "")
        venue = await asyncio.to_thread(venue_book, redis_url, self._node_id) if redis_url else None
        database_url = database_url_for(*self._db) if self._db is not None else ""
        ledger: dict[str, list[tuple[str, float]]] | None = None
        if database_url:
            want = sum(len(venue.execs.get(c, ())) for c in coids) if venue is not None else -1
            last, moved, deadline = -1, time.monotonic(), time.monotonic() + settle_s
            while True:
                ledger = await ledger_fills(database_url)
                n = sum(len(ledger.get(c, ())) for c in coids)
                if n != last:
                    last, moved = n, time.monotonic()
                if n >= want or time.monotonic() - moved > 5.0 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
        self.venue = venue_counts(set(coids), venue, ledger, self._second_exec_ids)
        self.venue["failovers"] = await asyncio.to_thread(failovers, self)
        self.venue["report_dups"] = self._dup_fills
        self.venue["report_dup_kinds"] = dict(self.dup_kinds)
        if venue is not None:  # must-fill signals the venue took and never executed, by order type
            unfilled: Counter[str] = Counter(
                venue.types.get(c, "?") for c, k in coids.items() if self._must_fill[k] and c in venue.taken
                and not venue.execs.get(c))
            self.venue["venue_unfilled_must_fill"] = dict(unfilled)
        return self.venue

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
        if self._client is not None:
            await self._client.close()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                await asyncio.get_running_loop().run_in_executor(None, self._proc.wait, 60)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait(10)
        if self._node_id:
            drop_node_keys(os.environ.get("REDIS_URL"), self._node_id)
        if self._db is not None:
            from node.migrations import drop_database

            await drop_database(*self._db)
            self._db = None
        if self._dir is not None:
            self._dir.cleanup()


class VenueBook(msgspec.Struct):
    """The paper venue's book log, per client order id: the venue order ids it took (one per
    `OrderTaken`), the quantity each works, and its executions (exec id -> (kind, qty))."""

    taken: dict[str, list[str]]
    types: dict[str, str]  # its order type
    qty: dict[str, float]
    execs: dict[str, dict[str, tuple[str, float]]]
    exec_records: dict[str, int]  # exec id -> reports handed out with it (1 each: a second is a repeat)


def venue_book(redis_url: str, node_id: str) -> VenueBook:
    """Read every paper book log of `node_id` (`<node_id>.paper.<broker>`, adapters.paper.journal)."""
    import redis

    from adapters.paper.journal import FIELD, PAGE
    from adapters.paper.records import OrderTaken, decode_records

    book = VenueBook(taken={}, types={}, qty={}, execs={}, exec_records={})
    r = redis.Redis.from_url(redis_url)
    try:
        for key in r.scan_iter(match=node_id + ".paper.*", count=1_000):
            start = "-"
            while page := r.xrange(key, min=start, max="+", count=PAGE):
                for _, fields in page:
                    for rec in decode_records(fields[FIELD]):
                        if type(rec) is OrderTaken:
                            coid = rec.intent.client_order_id
                            book.taken.setdefault(coid, []).append(rec.venue_order_id)
                            book.types[coid] = rec.intent.order_type.value
                            book.qty[coid] = book.qty.get(coid, 0.0) + rec.qty
                        elif type(rec) is ExecutionReport and rec.exec_id and rec.last_qty > 0.0:
                            book.exec_records[rec.exec_id] = book.exec_records.get(rec.exec_id, 0) + 1
                            book.execs.setdefault(rec.client_order_id, {})[rec.exec_id] = (rec.kind.value, rec.last_qty)
                start = "(" + page[-1][0].decode()
    finally:
        r.close()
    return book


async def ledger_fills(database_url: str) -> dict[str, list[tuple[str, float]]]:
    """The ledger's fills (PostgreSQL `fills`) per client order id: (exec id, qty)."""
    import asyncpg

    conn = await asyncpg.connect(database_url, timeout=10.0)
    try:
        rows = await conn.fetch("SELECT client_order_id, exec_id, qty FROM fills")
    finally:
        await conn.close()
    out: dict[str, list[tuple[str, float]]] = {}
    for coid, exec_id, qty in rows:
        out.setdefault(coid, []).append((exec_id, qty))
    return out


def venue_counts(coids: set[str], venue: VenueBook | None, ledger: dict[str, list[tuple[str, float]]] | None,
                 second_exec_ids: set[str]) -> dict:
    """Per signal sent (`coids`: their client order ids), what the venue and the ledger hold:

    - `venue_dup_orders`: signals the venue took more than one order for (a duplicated order);
    - `venue_dup_execs`: signals the venue executed more than the order's quantity, or that hold an
      exec id handed out twice (a duplicated execution);
    - `ledger_dup_fills`: signals whose ledger fills are more than the venue's executions (an exec
      id the venue does not have for it, or more quantity);
    - `report_dups_at_venue` / `report_dups_not_at_venue`: the exec ids of the second FILLs the
      client saw that the venue has / has not (a second FILL the venue has is a report of an
      execution that happened, a restated one of its fills; one it has not is invented).
    -1: that side was not readable."""
    out: dict = {"venue_orders": -1, "venue_dup_orders": -1, "venue_execs": -1, "venue_dup_execs": -1,
                 "ledger_fills": -1, "ledger_dup_fills": -1, "report_dups_at_venue": -1, "report_dups_not_at_venue": -1}
    if venue is not None:
        all_execs = {e for ex in venue.execs.values() for e in ex}
        out["venue_orders"] = sum(len(venue.taken.get(c, ())) for c in coids)
        out["venue_dup_orders"] = sum(1 for c in coids if len(venue.taken.get(c, ())) > 1)
        out["venue_execs"] = sum(len(venue.execs.get(c, ())) for c in coids)
        out["venue_dup_execs"] = sum(
            1 for c in coids
            if sum(q for _, q in venue.execs.get(c, {}).values()) > venue.qty.get(c, 0.0) + 1e-6
            or any(venue.exec_records[e] > 1 for e in venue.execs.get(c, ())))
        out["report_dups_at_venue"] = len(second_exec_ids & all_execs)
        out["report_dups_not_at_venue"] = len(second_exec_ids - all_execs)
    if ledger is not None:
        out["ledger_fills"] = sum(len(ledger.get(c, ())) for c in coids)
        if venue is not None:
            out["ledger_dup_fills"] = sum(
                1 for c in coids
                if any(e not in venue.execs.get(c, {}) for e, _ in ledger.get(c, ()))
                or sum(q for _, q in ledger.get(c, ())) > sum(q for _, q in venue.execs.get(c, {}).values()) + 1e-6)
    return out


def failovers(target: UserPathTarget) -> int:
    """`nae_failovers_total` from the node's /metrics (-1: not readable)."""
    import urllib.request

    api = target.endpoints.get("api", "")
    if not api.startswith("http"):
        return -1
    try:
        with urllib.request.urlopen(api.rstrip("/") + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
    except OSError:
        return -1
    return int(sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("nae_failovers_total")))


def _fill_kind(exec_id: str, reason: str) -> str:
    """A FILL report as the duplicate counts name it: its reason, and whether it carries an exec id."""
    return (reason or "-") + ("" if exec_id else "/no-exec-id")


async def make_user_path_target(quick: bool) -> UserPathTarget:
    return UserPathTarget(n_max=20_000 if quick else 200_000)
