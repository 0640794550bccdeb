"""`execnode`: run the node, send a signal, play the demo, run the benchmark.

    execnode up [--config node.toml] [--no-dashboard]
    execnode send --symbol AAPL --action BUY --quantity 10 [--strategy s1] [--order-type LIMIT --limit-price 230]
    execnode demo --signals 10000 [--json]
    execnode bench [--quick] [--json]

Errors a person can act on (bad config, a server that is down, a node that does not answer) are
printed as one line with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import time
from pathlib import Path

import msgspec

from node.config import NodeConfig, load_config
from node.errors import NodeError

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
    path = _data_dir(cfg) / "endpoints.json"
    path.write_text(json.dumps(registry, indent=2) + "\n")
    return path


# ---------------------------------------------------------------- commands


def cmd_up(args: argparse.Namespace) -> int:
    from node.runtime import NodeRuntime, run_until_interrupted

    cfg = ensure_keys(load_config(args.config))
    if args.dashboard is not None:
        cfg = msgspec.structs.replace(cfg, dashboard=args.dashboard)
    if args.address:  # join an existing Ray cluster (like RAY_ADDRESS); actors go where `placement` says
        cfg = msgspec.structs.replace(cfg, ray_address=args.address)
    runtime = NodeRuntime(cfg)
    try:
        registry = runtime.start()
    except BaseException:
        runtime.stop()
        raise
    path = _write_endpoints(cfg, registry)
    print("node %s up: intake %s, events %s, api %s (endpoints in %s). Ctrl-C stops it." % (
        cfg.node_id, registry["intake"], registry["events"], registry.get("api", "off"), path),
        file=sys.stderr, flush=True)
    run_until_interrupted(runtime)
    return 0


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
    (`node.risk.config.throughput_limits`), whatever the config file says."""
    from node.risk.config import throughput_limits

    keys = {DEV_KEY_ID: secrets.token_hex(32)}
    return msgspec.structs.replace(
        base,
        signing=msgspec.structs.replace(base.signing, keys=keys),
        intake=msgspec.structs.replace(base.intake, port=0),
        api=msgspec.structs.replace(base.api, port=0),
        risk=throughput_limits(base.risk),
        equity_usd=max(base.equity_usd, DEMO_EQUITY_USD),
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from node.client import AsyncExecutionClient
    from node.demo import make_signals, play
    from node.runtime import NodeRuntime, quiet, stderr_progress

    cfg = demo_config(load_config(args.config))
    progress = stderr_progress if not args.quiet else quiet
    runtime = NodeRuntime(cfg, progress)
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
        summary["node"] = runtime.stats()
    finally:
        runtime.stop()
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


def _join_ray_env() -> None:
    """A local cluster started by `execnode up` uses Ray's token auth (~/.ray/auth_token): join it
    with that token. Must run before Ray is imported (Ray reads its auth settings once)."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    token_file = Path.home() / ".ray" / "auth_token"
    if "RAY_AUTH_TOKEN" not in os.environ and token_file.exists():
        os.environ["RAY_AUTH_TOKEN"] = token_file.read_text().strip()


def _supervisor(cfg: NodeConfig):
    """The running node's supervisor (a node started by `execnode up` on this machine or cluster)."""
    import ray

    from node.errors import NodeError

    address = cfg.ray_address
    ep_file = Path(cfg.data_dir).resolve() / "endpoints.json"
    if address is None and ep_file.exists():
        address = json.loads(ep_file.read_text()).get("ray")
    try:
        ray.init(address=address or "auto", namespace=cfg.ray_namespace, log_to_driver=False,
                 configure_logging=False)
        return ray.get_actor(cfg.node_id + ".supervisor", namespace=cfg.ray_namespace)
    except (ConnectionError, ValueError) as exc:
        raise NodeError("no running node " + repr(cfg.node_id) + " found (start one with `execnode up`): "
                        + str(exc).splitlines()[0]) from None


def cmd_failover(args: argparse.Namespace) -> int:
    _join_ray_env()
    import ray

    sup = _supervisor(load_config(args.config))
    try:
        if args.command == "failover":
            ref = sup.failover.remote(args.to, "manual", 0, args.group)
        elif args.command == "failback":
            ref = sup.failback.remote(args.group)
        else:
            ref = sup.broker_failover.remote(args.group, args.to)
        event = ray.get(ref, timeout=120)
    except ray.exceptions.RayTaskError as exc:
        return _die(args.command + " failed: " + str(exc.cause if hasattr(exc, "cause") else exc).splitlines()[0])
    print(json.dumps(event))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    _join_ray_env()
    import ray

    sup = _supervisor(load_config(args.config))
    print(json.dumps(ray.get(sup.stats.remote(), timeout=30), indent=2, default=str))
    return 0


def cmd_admin(args: argparse.Namespace) -> int:
    _join_ray_env()
    import ray

    need = {"pause": "strategy", "resume": "strategy", "state": "state", "reset-breaker": "name",
            "covariance": "file", "limits": "limit"}.get(args.action)
    if need and not getattr(args, need):
        return _die("admin " + args.action + " needs --" + need)
    sup = _supervisor(load_config(args.config))
    params = {"kill": [args.strategy], "unkill": [args.strategy], "pause": [args.strategy],
              "resume": [args.strategy], "reset-breaker": [args.name], "state": [args.state, args.strategy],
              "controls": []}
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
    method = {"state": "set_state", "covariance": "load_covariance", "limits": "set_limits"}.get(
        args.action, args.action.replace("-", "_"))
    try:
        result = ray.get(sup.call.remote("validator", method, *params[args.action]), timeout=30)
    except ray.exceptions.RayTaskError as exc:
        return _die("admin " + args.action + " failed: " + str(exc.cause if hasattr(exc, "cause") else exc).splitlines()[0])
    print(json.dumps({"ok": True, "action": args.action, "result": result}, default=str))
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    """One reconciliation now; exit 0 when the books match, 1 on a mismatch, 2 when it could not run."""
    _join_ray_env()
    import ray

    sup = _supervisor(load_config(args.config))
    try:
        run = ray.get(sup.reconcile.remote("manual"), timeout=180)
    except ray.exceptions.RayTaskError as exc:
        return _die("reconcile failed: " + str(exc.cause if hasattr(exc, "cause") else exc).splitlines()[0])
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
    p.add_argument("--config", help="TOML config file (see README: Configuration)")
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the node until Ctrl-C")
    up.add_argument("--dashboard", dest="dashboard", action="store_true", default=True, help="Ray dashboard on (default)")
    up.add_argument("--no-dashboard", dest="dashboard", action="store_false")
    up.add_argument("--address", help="an existing Ray cluster to join (host:port; default: RAY_ADDRESS, else a local Ray)")
    up.set_defaults(func=cmd_up)

    send = sub.add_parser("send", help="send one signed signal and print the reply")
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

    demo = sub.add_parser("demo", help="start the node on embedded defaults and play Optimus")
    demo.add_argument("--signals", type=int, default=10_000)
    demo.add_argument("--window", type=int, default=256, help="signals awaiting a reply at once")
    demo.add_argument("--settle", type=float, default=15.0, help="seconds to wait for the last fills")
    demo.add_argument("--timeout", type=float, default=5.0, help="reply timeout per signal")
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--json", action="store_true", help="print one JSON object")
    demo.add_argument("--quiet", action="store_true")
    demo.set_defaults(func=cmd_demo)

    fo = sub.add_parser("failover", help="make another engine the leader (new epoch)")
    fo.add_argument("--to", help="engine name (default: the freshest standby by priority)")
    fo.add_argument("--group", help="engine group (default: the engine's, else the first)")
    fo.set_defaults(func=cmd_failover)
    fb = sub.add_parser("failback", help="back to the engine of highest priority")
    fb.add_argument("--group", help="engine group (default: the first)")
    fb.set_defaults(func=cmd_failover)
    bf = sub.add_parser("broker-failover", help="move an engine group to another broker (new epoch)")
    bf.add_argument("--to", help="broker name (default: the group's next live broker by priority)")
    bf.add_argument("--group", help="engine group (default: the first)")
    bf.set_defaults(func=cmd_failover)
    st = sub.add_parser("status", help="every actor's counters, the epoch, the failover log")
    st.set_defaults(func=cmd_status)
    ad = sub.add_parser("admin", help="risk controls: kill switch, pause, trading state, breakers")
    ad.add_argument("action", choices=["kill", "unkill", "pause", "resume", "state", "reset-breaker", "covariance",
                                       "limits", "controls"])
    ad.add_argument("--strategy", help="one strategy (kill/unkill/state: default node-wide)")
    ad.add_argument("--state", choices=["ACTIVE", "REDUCING", "HALTED"])
    ad.add_argument("--name", help="breaker: system, execution or strategy:<id>")
    ad.add_argument("--file", help='covariance: JSON {"symbols": [...], "matrix": [[...]]} (returns over the risk horizon)')
    ad.add_argument("--limit", action="append", metavar="NAME=VALUE", help="limits: a run-time limit (repeatable)")
    ad.set_defaults(func=cmd_admin)

    rc = sub.add_parser("reconcile", help="reconcile the ledger with every broker now (exit 1 on a mismatch)")
    rc.add_argument("--json", action="store_true", help="the run's summary as one JSON object")
    rc.set_defaults(func=cmd_reconcile)

    bench = sub.add_parser("bench", help="node vs seed-style baseline vs floor")
    bench.add_argument("--quick", action="store_true")
    bench.add_argument("--json", action="store_true")
    bench.add_argument("--json-out")
    bench.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except NodeError as exc:
        return _die(str(exc))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
