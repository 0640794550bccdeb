"""What the reconciler does about the halts it places (pure: no I/O, no clock, no sleep).

Two kinds of halt come from a reconciliation, and only one of them is the reconciler's to lift:

- `RECONCILE_FAILED`: the start-up run could not compare the books (a broker adapter restarting,
  PostgreSQL away), so the node did not start trading blind. Nothing was found wrong; the books
  were not read. Before placing it, the start-up run tries again (`startup_retry_delay`: bounded,
  backing off). Once placed, the reconciler lifts it itself at its first later run that compares
  the books and finds nothing that fails closed (`lifts_failed_halt`): the run that would not have
  halted had it been the start-up run. It lifts only a state that is still the one it placed
  (`FAILED_BY`, kept with the state in the validator's control fold: `SetState.by`), never one an
  operator set since, never a drift halt.
- a drift halt (`RECONCILE_POSITION_DRIFT`, ...): the books were compared and disagree in a way the
  broker's fills do not explain. It stays for an operator (README, "Operating the node").
"""

from __future__ import annotations

import msgspec

from node.reconcile_report import RunSummary

#: `SetState.by` of the reconciler's halts; the one for RECONCILE_FAILED is the only one it lifts
BY_RECONCILER = "reconciler:"
FAILED_REASON = "RECONCILE_FAILED"
FAILED_BY = BY_RECONCILER + FAILED_REASON


class StartupRetry(msgspec.Struct, frozen=True, kw_only=True):
    """How often, and how far apart, a start-up run that could not compare tries again before it
    halts: `attempts` tries in all, the waits doubling from `first_ms` up to `max_ms`."""

    attempts: int = 5
    first_ms: int = 500
    max_ms: int = 8_000


def startup_retry_delay(failed: int, policy: StartupRetry) -> float | None:
    """Seconds to wait after the `failed`-th failed start-up try (1 for the first), or None: no try
    is left, the run halts the node."""
    if failed < 1 or failed >= policy.attempts:
        return None
    return min(policy.first_ms * 2 ** (failed - 1), policy.max_ms) / 1000


def by_of(reason: str) -> str:
    """`SetState.by` of a halt the reconciler places for `reason` (its reason code, e.g.
    RECONCILE_POSITION_DRIFT (+2): the kind, without the count)."""
    return BY_RECONCILER + reason.split(" ", 1)[0]


def lifts_failed_halt(summary: RunSummary) -> bool:
    """Whether a run lifts the RECONCILE_FAILED halts: it compared the books (no error) and found
    nothing that fails closed (no action). A run with discrepancies it booked or only alerts on
    (a missing fill, a status mismatch) lifts them too: at start-up it would not have halted."""
    return not summary.error and not summary.actions
