"""`execnode`: run the node, operate it, send a signal, play the demo, run the benchmark.

    execnode up [--config node.toml] [--dashboard | --no-dashboard]
    execnode status [--json]                       the running node: groups, engines, brokers, breakers, lag
    execnode admin kill [--cancel-open]|unkill|pause|resume|state|reset-breaker|covariance ...
    execnode admin mode STRATEGY paper|shadow|canary|live [--force]   promote / demote (node.modes)
    execnode report modes [--strategy S] [--json]  the routes of strategies in modes compared
    execnode failover | failback | broker-failover ...
    execnode orders stranded | settle --broker NAME | resolve --order ID --canceled|--filled Q --price P
    execnode config check                          validate a config, print it with secrets hidden
    execnode send --symbol AAPL --action BUY --quantity 10 [--strategy s1] [--order-type LIMIT --limit-price 230]
    execnode demo --signals 10000 [--json]
    execnode bench [--quick] [--json]

`--config` goes before or after the subcommand. Errors a person can act on (bad config, a server
that is down, a node that does not answer, a data folder in use) are printed as one line with exit
status 2, never as a traceback; every command that talks to a running node gives up within its
`--timeout` (one line, exit status 2), whatever Ray does meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from node.config import NodeConfig, load_config
from nae_client.errors import ClientError
from node.errors import NodeError
from node.reach import DEADLINES, deadline, http_health, join_ray_env, supervisor

DEV_KEY_ID = "optimus"
DEMO_EQUITY_USD = 1e10  # the demo's paper account: percentage limits never bind on a random stream


def _die(msg: str) -> int:
    print("execnode: " + msg, file=sys.stderr)
    return 2


def _data_dir(cfg: NodeConfig) -> Path:
    path = Path(cfg.data_dir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def ensure_keys(cfg: NodeConfig) -> NodeConfig:
    """With no signing keys configured, use (or create) a dev key in the data folder (mode 0600)."""
    if cfg.signing.keys:
        return cfg
    key_file = _data_dir(cfg) / "signing.key"
    if not key_file.exists():
        key_file.write_text(DEV_KEY_ID + ":" + secrets.token_hex(32) + "\n")
        key_file.chmod(0o600)
    key_id, _, secret = key_file.read_text().strip().partition(":")
    return msgspec.structs.replace(cfg, signing=msgspec.structs.replace(cfg.signing, keys={key_id: secret}))


def _write_endpoints(cfg: NodeConfig, registry: dict[str, str]) -> Path:
    """The running node's addresses, and who runs it (pid, host): `status` and `admin` tell a
    stale file (a node that was killed) from a live node without waiting on Ray."""
    path = _data_dir(cfg) / "endpoints.json"
    doc = dict(registry, node_id=cfg.node_id, pid=os.getpid(), host=socket.gethostname())
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def _remove_endpoints(cfg: NodeConfig) -> None:
    """On stop: only the file this process wrote (a node on another data folder keeps its own)."""
    path = Path(cfg.data_dir).resolve() / "endpoints.json"
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def _dashboard_missing() -> str | None:
    """Why Ray's dashboard cannot start here (its packages come with `ray[default]`), or None.
    Ray's own check, asked before anything starts (Ray would raise it mid-start)."""
    try:
        from ray._private.utils import get_dashboard_dependency_error

        error = get_dashboard_dependency_error()
    except ImportError:  # another Ray: let ray.init judge
        return None
    if error:
        return ("the Ray dashboard needs `pip install 'ray[default]'` (" + str(error).splitlines()[0][:120]
                + "); set `dashboard = false` in the config or pass --no-dashboard")
    return None


# ---------------------------------------------------------------- commands


def cmd_up(args: argparse.Namespace) -> int:
    from node.datalock import DataDirLock
    from node.logs import configure as configure_logging, lifecycle, logger
    from node.runtime import NodeRuntime, run_until_interrupted

    cfg = load_config(args.config)
    if args.dashboard is not None:  # the flag wins only when given: else the config's value
        cfg = msgspec.structs.replace(cfg, dashboard=args.dashboard)
    if args.address:  # join an existing Ray cluster (like RAY_ADDRESS); actors go where `placement` says
        cfg = msgspec.structs.replace(cfg, ray_address=args.address)
    if cfg.dashboard and (why := _dashboard_missing()):
        return _die(why)
    lock = DataDirLock(cfg.data_dir, cfg.node_id).acquire()  # before anything touches the folder
    try:
        # absolute: the actors' processes (log file, embedded stores) may run in another folder
        cfg = ensure_keys(msgspec.structs.replace(cfg, data_dir=str(Path(cfg.data_dir).resolve())))
        configure_logging(cfg)
        log = logger("node")
        runtime = NodeRuntime(cfg)
        try:
            registry = runtime.start()
        except BaseException as exc:
            runtime.stop()
            if isinstance(exc, (NodeError, KeyboardInterrupt)):
                raise
            if isinstance(exc, Exception):
                log.error("start failed", exc_info=exc)
                return _die("could not start: " + type(exc).__name__ + ": " + (str(exc).splitlines() or [""])[0][:300])
            raise
        path = _write_endpoints(cfg, registry)
        lifecycle(log, "start", node=cfg.node_id, intake=registry["intake"], events=registry["events"],
                  api=registry.get("api", "off"))
        print("node %s up: intake %s, events %s, api %s (endpoints in %s). Ctrl-C stops it." % (
            cfg.node_id, registry["intake"], registry["events"], registry.get("api", "off"), path),
            file=sys.stderr, flush=True)
        try:
            why = run_until_interrupted(runtime)
        finally:
            _remove_endpoints(cfg)
            lifecycle(log, "stop", node=cfg.node_id)
        return 0 if why is None else _die("node down: " + why)
    finally:
        lock.release()


def cmd_send(args: argparse.Namespace) -> int:
    from node.client import ExecutionClient

    cfg = ensure_keys(load_config(args.config))
    endpoint = args.endpoint
    if endpoint is None:
        ep_file = _data_dir(cfg) / "endpoints.json"
        if not ep_file.exists():
            return _die("no --endpoint given and no running node found (" + str(ep_file) + "); start one with `execnode up`")
        endpoint = json.loads(ep_file.read_text())["intake"]
    key_id = args.key_id or next(iter(cfg.signing.keys))
    secret = args.secret or cfg.signing.keys.get(key_id)
    if not secret:
        return _die("no secret for key id " + repr(key_id))
    signal: dict = {
        "strategy_id": args.strategy,
        "symbol": args.symbol,
        "action": args.action,
        "order_type": args.order_type,
    }
    for name in ("request_id", "quantity", "notional", "limit_price", "stop_price"):
        value = getattr(args, name)
        if value is not None:
            signal[name] = value
    with ExecutionClient(endpoint, key_id, secret, timeout_s=args.timeout) as client:
        if args.wait_fill:
            client.subscribe(args.strategy)
            time.sleep(0.2)
        reply = client.send_signal(signal)
        print(json.dumps(msgspec.to_builtins(reply)))
        if args.wait_fill and reply.status == "ACCEPTED":
            from node.messages import to_json

            for ev in client.events(timeout_s=args.timeout):
                if ev.request_id == reply.request_id:
                    print(to_json(ev).decode())
                    if ev.kind in ("FILL", "CANCELED", "REJECTED"):
                        break
    return 0 if reply.status == "ACCEPTED" else 1


def demo_config(base: NodeConfig) -> NodeConfig:
    """The demo runs on any free port with a fresh signing key and throughput-sized risk limits
    (`node.risk.config.throughput_limits`), whatever the config file says; and as a node of its own
    for this run (`node.scratch.isolated`: its own node id and streams, so it neither adopts what an
    earlier run or a real node left in the same Redis nor touches it)."""
    from node.risk.config import throughput_limits
    from node.scratch import isolated

    keys = {DEV_KEY_ID: secrets.token_hex(32)}
    base = isolated(base)
    return msgspec.structs.replace(
        base,
        signing=msgspec.structs.replace(base.signing, keys=keys),
        intake=msgspec.structs.replace(base.intake, port=0),
        api=msgspec.structs.replace(base.api, port=0),
        risk=throughput_limits(base.risk),
        equity_usd=max(base.equity_usd, DEMO_EQUITY_USD),
        # a demonstration, not a trading node: it runs on whatever Redis REDIS_URL names (its persistence
        # is printed at start); `execnode up` refuses a Redis without AOF unless the config allows it
        storage=msgspec.structs.replace(base.storage, allow_volatile_redis=True),
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from node.client import AsyncExecutionClient
    from node.demo import make_signals, play
    from node.runtime import NodeRuntime, quiet, stderr_progress

    from node.datalock import DataDirLock

    cfg = demo_config(load_config(args.config))
    progress = stderr_progress if not args.quiet else quiet
    runtime = NodeRuntime(cfg, progress, scratch=True)  # its own database, its keys gone at stop
    # embedded stores live in the data folder: not while a node runs on it
    embedded = not (cfg.storage.redis_url and cfg.storage.database_url)
    lock = DataDirLock(cfg.data_dir, cfg.node_id).acquire() if embedded else None
    try:
        registry = runtime.start()
        prices = {s.symbol: s.price for s in cfg.broker.paper.symbols}
        signals = make_signals(args.signals, prices, seed=args.seed)
        key_id, secret = next(iter(cfg.signing.keys.items()))

        async def go():
            async with AsyncExecutionClient(registry["intake"], key_id, secret, timeout_s=args.timeout) as client:
                return await play(client, signals, window=args.window, settle_s=args.settle, progress=progress)

        result = asyncio.run(go())
        summary = result.summary()
        summary["node_id"] = cfg.node_id
        summary["node"] = runtime.stats()
    finally:
        runtime.stop()
        if lock is not None:
            lock.release()
    if args.json:
        print(json.dumps(summary))
    else:
        _print_summary(summary)
    return 0 if summary["lost"] == 0 and summary["duplicates"] == 0 else 1


def _print_summary(s: dict) -> None:
    print("signals sent      %d" % s["sent"])
    print("accepted          %d   rejected %d   (reasons: %s)" % (s["accepted"], s["rejected"], s["reasons"] or "-"))
    print("filled            %d   canceled %d   venue rejects %d" % (s["filled"], s["canceled"], s["venue_rejected"]))
    print("lost              %d   duplicates %d   timeouts %d" % (s["lost"], s["duplicates"], s["timeouts"]))
    print("signal -> reply   p50 %.0f us   p99 %.0f us   p99.9 %.0f us" % (s["p50_us"], s["p99_us"], s["p999_us"]))
    print("signal -> fill    p50 %.0f us   p99 %.0f us   p99.9 %.0f us" % (s["fill_p50_us"], s["fill_p99_us"], s["fill_p999_us"]))
    print("rate              %.0f signals/s over %.1f s" % (s["signals_per_s"], s["elapsed_s"]))


def _failure(what: str, exc: BaseException) -> int:
    cause = getattr(exc, "cause", None) or exc
    return _die(what + " failed: " + type(cause).__name__ + ": " + (str(cause).splitlines() or [""])[0][:300])


def cmd_failover(args: argparse.Namespace) -> int:
    join_ray_env()
    deadline(args.timeout, args.command)
    import ray

    sup = supervisor(load_config(args.config))
    try:
        if args.command == "failover":
            ref = sup.failover.remote(args.to, "manual", 0, args.group)
        elif args.command == "failback":
            ref = sup.failback.remote(args.group)
        else:
            ref = sup.broker_failover.remote(args.group, args.to)
        event = ray.get(ref, timeout=args.timeout)
    except (ray.exceptions.RayError, TimeoutError) as exc:
        return _failure(args.command, exc)
    print(json.dumps(event))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from node import status

    join_ray_env()
    deadline(args.timeout, "status")
    import ray

    cfg = load_config(args.config)
    sup = supervisor(cfg)
    try:
        stats = ray.get(sup.stats.remote(max(1.0, args.timeout / 3)), timeout=args.timeout)
    except (ray.exceptions.RayError, TimeoutError) as exc:
        return _failure("status", exc)
    try:
        breakers = ray.get(sup.call.remote("validator", "breaker_states"), timeout=max(1.0, args.timeout / 3))
    except (ray.exceptions.RayError, TimeoutError):
        breakers = {}
    registry = ray.get(sup.registry.remote(), timeout=args.timeout)
    health = http_health(registry.get("api"), timeout_s=max(1.0, args.timeout / 3))
    lag = (health.get("components", {}).get("ledger_lag") or {}).get("streams") if health else None
    view = status.view(stats, breakers, lag)
    view["stores"] = {k: c.get("status") for k, c in (health or {}).get("components", {}).items()
                      if k in ("redis", "postgresql")}
    view["ready"] = (health or {}).get("ready")
    view["not_ready"] = (health or {}).get("not_ready", [])
    if args.json:
        print(json.dumps({"view": view, "stats": stats}, indent=2, default=str))
        return 0
    print(status.table(view, cfg.node_id))
    stores = ", ".join(k + " " + str(v) for k, v in sorted(view["stores"].items())) or "unknown (API off)"
    print("stores: " + stores + "; ready: " + ("yes" if view["ready"] else "no " + "; ".join(view["not_ready"])
                                                   if view["ready"] is not None else "unknown"))
    return 0


def cmd_admin(args: argparse.Namespace) -> int:
    join_ray_env()
    need = {"pause": "strategy", "resume": "strategy", "state": "state", "reset-breaker": "name",
            "covariance": "file", "limits": "limit"}.get(args.action)
    if need and not getattr(args, need):
        return _die("admin " + args.action + " needs --" + need)
    if args.cancel_open and args.action != "kill":
        return _die("--cancel-open goes with admin kill only")
    if (args.action == "mode") != bool(args.args) or (args.action == "mode" and len(args.args) != 2):
        return _die("admin mode takes STRATEGY MODE (paper, shadow, canary, live); other actions take no arguments")
    if args.force and args.action != "mode":
        return _die("admin " + args.action + ": --force goes with admin mode only")
    params = {"kill": [args.strategy], "unkill": [args.strategy], "pause": [args.strategy],
              "resume": [args.strategy], "reset-breaker": [args.name], "state": [args.state, args.strategy],
              "controls": [], "modes": [], "mode": [*args.args, args.force]}
    if args.action == "limits":
        try:
            params["limits"] = [{k: float(v) for k, v in (item.split("=", 1) for item in args.limit)}]
        except ValueError:
            return _die("admin limits: --limit NAME=VALUE, VALUE a number (e.g. --limit max_quantity=500)")
    if args.action == "covariance":
        try:
            doc = json.loads(Path(args.file).read_text())
            params["covariance"] = [list(doc["symbols"]), [list(map(float, row)) for row in doc["matrix"]]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return _die("admin covariance: " + args.file + ': expected {"symbols": [...], "matrix": [[...]]}: '
                        + type(exc).__name__ + ": " + str(exc))
    deadline(args.timeout, "admin " + args.action)
    import ray

    sup = supervisor(load_config(args.config))
    method = {"state": "set_state", "covariance": "load_covariance", "limits": "set_limits", "mode": "set_mode",
              "modes": "modes_in_force"}.get(
        args.action, args.action.replace("-", "_"))
    try:
        if args.action == "kill" and args.cancel_open:
            result = ray.get(sup.kill.remote(args.strategy, True), timeout=args.timeout)
        else:
            result = ray.get(sup.call.remote("validator", method, *params[args.action]), timeout=args.timeout)
    except (ray.exceptions.RayError, TimeoutError) as exc:
        return _failure("admin " + args.action, exc)
    print(json.dumps({"ok": True, "action": args.action, "result": result}, default=str))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """The routes of strategies in modes compared (node.mode_report), Markdown or JSON."""
    cfg = load_config(args.config)
    deadline(args.timeout, "report " + args.what)
    url = cfg.storage.redis_url
    if not url:  # the embedded Redis: the running node knows where
        join_ray_env()
        import ray

        try:
            url = ray.get(supervisor(cfg).redis_url.remote(), timeout=args.timeout)
        except (ray.exceptions.RayError, TimeoutError) as exc:
            return _failure("report " + args.what, exc)
    from node import mode_report
    from node.streams import connect_redis

    st = cfg.storage
    since_ms = int((time.time() - args.since_min * 60) * 1000) if args.since_min else 0
    try:
        signals, reports, shadow = mode_report.read_streams(connect_redis(url), st.signals_stream, st.events_stream,
                                                            st.shadow_stream, since_ms)
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback
        return _failure("report " + args.what, exc)
    rows = mode_report.compare(signals, reports, shadow, args.strategy)
    if args.json:
        print(json.dumps(msgspec.to_builtins(rows), indent=2))
    else:
        print(mode_report.markdown(rows))
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    """One reconciliation now; exit 0 when the books match, 1 on a mismatch, 2 when it could not run."""
    join_ray_env()
    deadline(args.timeout, "reconcile")
    import ray

    sup = supervisor(load_config(args.config))
    try:
        run = ray.get(sup.reconcile.remote("manual"), timeout=args.timeout)
    except (ray.exceptions.RayError, TimeoutError) as exc:
        return _failure("reconcile", exc)
    if args.json:
        print(json.dumps(run, default=str))
    else:
        print("reconciliation %s: %s in %.1f ms%s" % (
            run["run_id"], "MATCHED" if run["matched"] else "MISMATCH", run["took_ms"],
            (" (error: " + run["error"] + ")") if run.get("error") else ""))
        for kind, n in sorted(run.get("counts", {}).items()):
            print("  %-26s %d" % (kind, n))
        for a in run.get("actions", []):
            print("  action: %s %s" % (a["state"], a.get("strategy_id") or "node-wide"))
        if run.get("booked"):
            print("  booked from the broker: %d reports" % run["booked"])
    if run.get("error"):
        return 2
    return 0 if run["matched"] else 1


def cmd_orders(args: argparse.Namespace) -> int:
    """Stranded orders: UNKNOWN (BROKER_LOST) at a broker a group moved away from. `stranded` lists
    them per group; `settle --broker B` asks broker B (back on its address, in front of its own
    account) about them: what it has is adopted with its fills, what it never got is re-driven once
    to the group's current broker; `resolve --order ID --canceled | --filled Q --price P` closes one
    by hand, on the operator's word after checking the lost broker's account (reason
    MANUAL_RESOLUTION, in the events stream and the ledger like any report)."""
    join_ray_env()
    deadline(args.timeout, "orders " + args.action)
    import ray

    sup = supervisor(load_config(args.config))
    try:
        stats = ray.get(sup.stats.remote(max(1.0, args.timeout / 3)), timeout=args.timeout)
        groups = (stats.get("supervisor") or {}).get("groups") or {}
        if args.action == "stranded":
            out = {}
            for name, g in groups.items():
                orders = ray.get(sup.call.remote("engine:" + g["leader"], "stranded_orders"), timeout=args.timeout)
                out[name] = {"engine": g["leader"], "orders": orders}
            print(json.dumps({"groups": out, "stranded": sum(len(g["orders"]) for g in out.values())}, default=str))
            return 0
        group = args.group or next(iter(groups), None)
        if group not in groups:
            return _die("orders " + args.action + ": unknown group " + repr(group) + " (groups: " + ", ".join(groups) + ")")
        leader = groups[group]["leader"]
        if args.action == "resolve":
            filled = 0.0 if args.canceled else args.filled
            result = ray.get(sup.call.remote("engine:" + leader, "resolve_stranded", args.order, filled,
                                             args.price or 0.0), timeout=args.timeout)
        else:
            registry = ray.get(sup.registry.remote(), timeout=args.timeout)
            endpoint = registry.get("broker:" + args.broker)
            if endpoint is None:
                return _die("orders settle: unknown broker " + repr(args.broker))
            result = ray.get(sup.call.remote("engine:" + leader, "settle_stranded", endpoint), timeout=args.timeout)
    except (ray.exceptions.RayError, TimeoutError) as exc:
        return _failure("orders " + args.action, exc)
    print(json.dumps({"group": group, "engine": leader, "action": args.action, **(result or {})}, default=str))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """Validate the config (file and environment overrides) and print it, secrets hidden."""
    from node.logs import secrets_of

    cfg = load_config(args.config)
    from node.logs import mask

    doc = msgspec.to_builtins(cfg)
    doc["signing"]["keys"] = {k: "***" for k in doc["signing"]["keys"]}
    if doc["api"]["admin_token"]:
        doc["api"]["admin_token"] = "***"
    text = mask(json.dumps(doc, indent=2), secrets_of(cfg))
    print(text)
    print("execnode: config OK" + (" (" + args.config + ")" if args.config else " (defaults and environment)"),
          file=sys.stderr)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import subprocess
    import sys

    argv = []
    if args.quick:
        argv.append("--quick")
    if args.json:
        argv.append("--json")
    if args.json_out:
        argv += ["--json-out", args.json_out]
    # a program of its own: the product never imports bench/ (tests/unit/test_import_contract.py)
    return subprocess.call([sys.executable, "-m", "bench.run", *argv])


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="execnode", description="NAE execution node")
    p.add_argument("--config", help="TOML config file (see README: Configuration); before or after the command")
    # every subcommand takes --config too; SUPPRESS: absent there, the top-level value stands
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help="TOML config file")
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, **kw: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kw)

    def bounded(parser: argparse.ArgumentParser, seconds: float) -> None:
        parser.add_argument("--timeout", type=float, default=seconds,
                            help="give up after this many seconds (default %g)" % seconds)

    up = command("up", help="run the node until Ctrl-C or SIGTERM")
    up.add_argument("--dashboard", dest="dashboard", action="store_true", default=None,
                    help="Ray dashboard on (needs ray[default]); default: the config's `dashboard` (off)")
    up.add_argument("--no-dashboard", dest="dashboard", action="store_false")
    up.add_argument("--address", help="an existing Ray cluster to join (host:port; default: RAY_ADDRESS, else a local Ray)")
    up.set_defaults(func=cmd_up)

    send = command("send", help="send one signed signal and print the reply")
    send.add_argument("--endpoint", help="intake endpoint (default: the running node's, from the data folder)")
    send.add_argument("--key-id")
    send.add_argument("--secret")
    send.add_argument("--request-id")
    send.add_argument("--strategy", default="manual")
    send.add_argument("--symbol", required=True)
    send.add_argument("--action", required=True, choices=["BUY", "SELL", "BUY_TO_OPEN", "SELL_TO_OPEN", "BUY_TO_CLOSE", "SELL_TO_CLOSE"])
    send.add_argument("--quantity", type=float)
    send.add_argument("--notional", type=float)
    send.add_argument("--order-type", default="MARKET", choices=["MARKET", "LIMIT", "STOP", "STOP_LIMIT"])
    send.add_argument("--limit-price", type=float)
    send.add_argument("--stop-price", type=float)
    send.add_argument("--timeout", type=float, default=2.0)
    send.add_argument("--wait-fill", action="store_true", help="also print the order's execution reports")
    send.set_defaults(func=cmd_send)

    demo = command("demo", help="start the node on embedded defaults and play Optimus")
    demo.add_argument("--signals", type=int, default=10_000)
    demo.add_argument("--window", type=int, default=256, help="signals awaiting a reply at once")
    demo.add_argument("--settle", type=float, default=15.0, help="seconds to wait for the last fills")
    demo.add_argument("--timeout", type=float, default=5.0, help="reply timeout per signal")
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--json", action="store_true", help="print one JSON object")
    demo.add_argument("--quiet", action="store_true")
    demo.set_defaults(func=cmd_demo)

    fo = command("failover", help="make another engine the leader (new epoch)")
    fo.add_argument("--to", help="engine name (default: the freshest standby by priority)")
    fo.add_argument("--group", help="engine group (default: the engine's, else the first)")
    bounded(fo, 120)
    fo.set_defaults(func=cmd_failover)
    fb = command("failback", help="back to the engine of highest priority")
    fb.add_argument("--group", help="engine group (default: the first)")
    bounded(fb, 120)
    fb.set_defaults(func=cmd_failover)
    bf = command("broker-failover", help="move an engine group to another broker (new epoch)")
    bf.add_argument("--to", help="broker name (default: the group's next live broker by priority)")
    bf.add_argument("--group", help="engine group (default: the first)")
    bounded(bf, 120)
    bf.set_defaults(func=cmd_failover)
    st = command("status", help="groups, engines, brokers, breakers, ledger lag, stranded orders (a table)")
    st.add_argument("--json", action="store_true", help="one JSON object: the view and every actor's counters")
    bounded(st, 30)
    st.set_defaults(func=cmd_status)
    ad = command("admin", help="risk controls: kill switch, pause, trading state, breakers")
    ad.add_argument("action", choices=["kill", "unkill", "pause", "resume", "state", "reset-breaker", "covariance",
                                       "limits", "controls", "mode", "modes"])
    ad.add_argument("args", nargs="*", metavar="ARG", help="mode: STRATEGY MODE (paper, shadow, canary, live)")
    ad.add_argument("--force", action="store_true", help="mode: allow a jump of more than one step")
    ad.add_argument("--strategy", help="one strategy (kill/unkill/state: default node-wide)")
    ad.add_argument("--state", choices=["ACTIVE", "REDUCING", "HALTED"])
    ad.add_argument("--name", help="breaker: system, execution or strategy:<id>")
    ad.add_argument("--file", help='covariance: JSON {"symbols": [...], "matrix": [[...]]} (returns over the risk horizon)')
    ad.add_argument("--limit", action="append", metavar="NAME=VALUE", help="limits: a run-time limit (repeatable)")
    ad.add_argument("--cancel-open", action="store_true",
                    help="kill: then every group's leader cancels its orders not yet finished (of --strategy, or all)")
    bounded(ad, 30)
    ad.set_defaults(func=cmd_admin)
    rp = command("report", help="`report modes`: the routes of strategies in modes compared (fills, prices, latency)")
    rp.add_argument("what", choices=["modes"])
    rp.add_argument("--strategy", help="one strategy (default: every strategy in modes)")
    rp.add_argument("--since-min", type=float, default=0.0, help="only what was logged in the last N minutes")
    rp.add_argument("--json", action="store_true", help="JSON instead of a Markdown table")
    bounded(rp, 60)
    rp.set_defaults(func=cmd_report)
    od = command("orders", help="stranded UNKNOWN (BROKER_LOST) orders: list them, or settle them with their broker")
    od.add_argument("action", choices=["stranded", "settle", "resolve"])
    od.add_argument("--broker", help="settle: the lost broker, back on its address")
    od.add_argument("--group", help="settle / resolve: the engine group (default: the first)")
    od.add_argument("--order", help="resolve: the client order id (from `orders stranded`)")
    how = od.add_mutually_exclusive_group()
    how.add_argument("--canceled", action="store_true", help="resolve: it never executed at the lost broker")
    how.add_argument("--filled", type=float, help="resolve: the quantity it filled there in all")
    od.add_argument("--price", type=float, help="resolve --filled: the average fill price")
    bounded(od, 60)
    od.set_defaults(func=cmd_orders)
    cf = command("config", help="`config check`: validate a config and print it with secrets hidden")
    cf.add_argument("action", choices=["check"])
    cf.set_defaults(func=cmd_config)

    rc = command("reconcile", help="reconcile the ledger with every broker now (exit 1 on a mismatch)")
    rc.add_argument("--json", action="store_true", help="the run's summary as one JSON object")
    bounded(rc, 180)
    rc.set_defaults(func=cmd_reconcile)

    bench = command("bench", help="node vs seed-style baseline vs floor")
    bench.add_argument("--quick", action="store_true")
    bench.add_argument("--json", action="store_true")
    bench.add_argument("--json-out")
    bench.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "orders" and args.action == "settle" and not args.broker:
        return _die("orders settle needs --broker (the lost broker, back on its address)")
    if args.command == "orders" and args.action == "resolve" and not (
            args.order and (args.canceled or (args.filled is not None and (args.filled == 0 or args.price)))):
        return _die("orders resolve needs --order ID and --canceled, or --filled QTY --price PX")
    try:
        return args.func(args)
    except (NodeError, ClientError) as exc:  # the node's errors and the client's (no answer, no fallback)
        return _die(str(exc))
    except KeyboardInterrupt:
        return 130
    finally:
        while DEADLINES:
            DEADLINES.pop().cancel()


if __name__ == "__main__":
    sys.exit(main())
