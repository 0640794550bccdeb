"""Liveness verdicts for the supervised actors: dead by evidence of death, never by a slow answer.

The supervisor looks at each actor it restarts (the validator, the broker adapters, the ledger, the
reconciler) every watch round and tells `LivenessPolicy.judge` what it found: the answer to its
`alive()` call (`Answer`) and, when it knows the actor's process and it runs on this machine, whether
that process still exists (`Process`, from `os.kill(pid, 0)`). The verdict (`Verdict`):

- Ray's death notice came (ActorDiedError), or the actor says its service stopped (`alive()` false),
  or it did not answer and its process is gone: DEAD, restart at once;
- it answered: UP (an answer is proof of life, whatever a pid learned earlier says);
- no answer in time (a loaded machine, a long call in its loop) and no evidence of death: SLOW,
  nothing is done (a needless restart costs a recovery and refusals); the heartbeat-like silence is
  counted from its last answer;
- no answer for `hung_after_ns` (far longer than any slow answer: 30 s against the 2 s of one call)
  while its process is still there, or on another machine: HUNG. It is restarted like a dead one
  (a process that answers nothing for that long holds its port and does no work), and the record
  says `hung`, not `died`.

A restarted supervisor judges each group's leader once, at once (`resume_verdict`), from what it
finds instead of waiting for its detection windows: the leader that answers as the leader keeps its
lane; one whose process is gone, or that answers as a standby (Ray restarted the process that led),
has its best standby promoted right away; one that does not answer while its process is there (or
elsewhere) is left to the heartbeats.

The clock is injected (`now` in ns), so every verdict is unit-tested without Ray.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from node.control import Role

__all__ = ["Answer", "LivenessPolicy", "Process", "ResumeVerdict", "Verdict", "resume_verdict"]


class Answer(StrEnum):
    """What one `alive()` call found."""

    YES = "yes"  # answered true
    NO = "no"  # answered false: the service's loop is not running
    LATE = "late"  # no answer within the call's timeout, or Ray could not reach it (ActorUnavailableError)
    DIED = "died"  # Ray's death notice (ActorDiedError)


class Process(StrEnum):
    """The actor's process, as `os.kill(pid, 0)` on the same machine sees it."""

    ALIVE = "alive"
    GONE = "gone"
    UNKNOWN = "unknown"  # pid not known, or the actor runs on another machine


class Verdict(StrEnum):
    UP = "up"
    SLOW = "slow"  # no answer, no evidence of death: wait
    DEAD = "dead"  # restart at once
    HUNG = "hung"  # silent past `hung_after_ns`, process still there (or elsewhere): restart


class ResumeVerdict(StrEnum):
    KEEP = "keep"  # the leader leads
    PROMOTE = "promote"  # the process that led is gone: promote the best standby now
    WAIT = "wait"  # no answer, no evidence: the heartbeats decide


@dataclass
class LivenessPolicy:
    """Per role: when it last answered; verdicts over an injected clock (see the module docstring)."""

    hung_after_ns: int = 30_000_000_000
    _answered_ns: dict[str, int] = field(default_factory=dict)

    def started(self, role: str, now: int) -> None:
        """A new actor plays `role` (it answered its start): silence counts from now."""
        self._answered_ns[role] = now

    def judge(self, role: str, answer: Answer, process: Process, now: int) -> Verdict:
        if answer in (Answer.DIED, Answer.NO):
            return Verdict.DEAD
        if answer == Answer.YES:  # proof of life, whatever an old pid says
            self._answered_ns[role] = now
            return Verdict.UP
        if process == Process.GONE:
            return Verdict.DEAD
        since = self._answered_ns.setdefault(role, now)  # never answered yet: silence counts from the first look
        return Verdict.HUNG if now - since > self.hung_after_ns else Verdict.SLOW


def resume_verdict(view: tuple[str, int] | None, process: Process) -> ResumeVerdict:
    """A restarted supervisor's first look at a group's leader: `view` is its answer (role, epoch), or
    None when it did not answer; `process` what `os.kill(pid, 0)` says of the process that led."""
    if view is not None:
        return ResumeVerdict.KEEP if view[0] == Role.LEADER else ResumeVerdict.PROMOTE
    return ResumeVerdict.PROMOTE if process == Process.GONE else ResumeVerdict.WAIT
