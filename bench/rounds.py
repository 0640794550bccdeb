"""A/B of two builds in one run, round by round (shared by `bench.client_report`, `bench.gate_report`,
`bench.intake_report`, `bench.snapshot_report`, `bench.wake_report`): the rounds alternate the builds (A, B, B, A, ...) so each build meets the
same minutes of a shared machine; each figure is the median over a build's rounds, judged as B/A."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Callable, Sequence

import orjson


def add_build_args(ap: argparse.ArgumentParser, rounds: int) -> None:
    ap.add_argument("--build", action="append", required=True, help="NAME=checkout (twice: A and B)")
    ap.add_argument("--rounds", type=int, default=rounds)
    ap.add_argument("--json", action="store_true")


def builds_of(args: argparse.Namespace) -> list[tuple[str, str]]:
    return [tuple(b.split("=", 1)) for b in args.build]  # type: ignore[misc]


def alternate(builds: Sequence[tuple[str, str]], rounds: int, one: Callable[[str], dict]) -> dict[str, list[dict]]:
    """`one(checkout)` per build per round, in alternating order; each round's figures also as a
    JSON line on stderr (with the minute's load)."""
    out: dict[str, list[dict]] = {name: [] for name, _ in builds}
    for i in range(rounds):
        for name, code in builds if i % 2 == 0 else list(builds)[::-1]:
            got = one(code)
            print(
                orjson.dumps({"round": i, "build": name, "load_1m": round(os.getloadavg()[0], 1), **got}).decode(),
                file=sys.stderr,
            )
            out[name].append(got)
    return out


def report(
    builds: Sequence[tuple[str, str]], rounds: dict[str, list[dict]], keys: Sequence[str], as_json: bool
) -> None:
    """Medians per build of `keys`, their ratios B/A; printed as JSON or one line a figure."""
    medians = {name: {k: statistics.median(r[k] for r in rs) for k in keys} for name, rs in rounds.items()}
    (a, _), (b, _) = builds[0], builds[1]
    ratios = {k: round(medians[b][k] / medians[a][k], 3) for k in keys if medians[a][k]}
    out = {"medians": medians, "ratios_b_over_a": ratios, "rounds": rounds, "load": os.getloadavg()}
    print(
        orjson.dumps(out, option=orjson.OPT_INDENT_2).decode()
        if as_json
        else "\n".join(
            k + ": " + " ".join(n + "=" + str(medians[n][k]) for n in medians) + "  B/A " + str(ratios.get(k))
            for k in keys
        )
    )
