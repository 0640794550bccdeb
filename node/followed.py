"""The fills a hot standby followed from its leader, until a promotion logs those the log lacks (pure).

A leader publishes each execution report at once and appends it to `execution.events` (the ledger's
and the client's replay's source) at its next events flush; a leader that dies or is fenced between
the two leaves fills that subscribers saw out of the log. Every standby, whatever its engine, keeps
the newest fills it followed (`FollowedFills`); promoted, its host reads the events stream for them
(`StreamLog.exec_ids_since`, from `logged_since_ms(fills, FOLLOWED_LOG_MARGIN_MS)`) and appends
`unlogged(...)` once, ahead of its own reports, never publishing them again
(`actors.engine_base.EngineBase._log_followed`). The native standby keeps them in its host, the
Nautilus standby in its kernel child, which hands them to its host with the promotion's answer.

The logged mark (native leaders, one engine group): with each events flush a leader SETs, in the
same round trip, the key `logged_mark_key(node_id, group)` to the entry id and exec id of the last
execution it published and its previous flush appended (`encode_mark`: written only once that
append answered, so the mark never names what is not in the stream). A leader appends what it
published in the order it published it, and a standby follows one leader's reports in that order,
so every fill a standby followed up to the mark's exec id is in the stream at or before its entry.
A promotion then reads the stream only from the mark's entry, for the fills followed after it (one
or two entries), instead of ~15 s of the stream back from the oldest of up to 10,000 fills
(`split_at_mark`). The mark's exec id not in the stream from its entry on (trimmed), not among the
followed fills (a standby restarted), or no mark: the read by time, as before. A repeat the ledger
dedupes by exec id, never a loss: a fill is known logged only on the word of a leader whose append
answered.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Collection

from node.messages import ExecutionReport
from node.recovery import FILL_KINDS

#: the newest followed fills a promotion makes sure `execution.events` holds (a leader's events flush
#: follows its publishing within one wake-up; only a Redis outage at the old leader holds back more)
FOLLOWED_FILLS_KEPT = 10_000
#: how far before the oldest of them a promotion reads the events stream: a broker clock ahead of the
#: Redis host's by more only makes repeats (the ledger dedupes by exec id), never a loss
FOLLOWED_LOG_MARGIN_MS = 5_000


def logged_mark_key(node_id: str, group: str) -> str:
    """The Redis key of an engine group's logged mark."""
    return node_id + ".events.logged." + group


def encode_mark(entry_id: bytes | str, exec_id: str) -> bytes:
    """The mark's value: `<entry id> <exec id>` (an entry id holds no space)."""
    return (entry_id.decode() if isinstance(entry_id, bytes) else entry_id).encode() + b" " + exec_id.encode()


def decode_mark(raw: bytes | None) -> tuple[str, str] | None:
    """(entry id, exec id) of a mark's value; None for no mark or one that does not parse."""
    if not raw:
        return None
    try:
        entry_id, _, exec_id = raw.decode().partition(" ")
        ms, dash, seq = entry_id.partition("-")
        if not (exec_id and dash and ms.isdigit() and seq.isdigit()):
            return None
    except UnicodeDecodeError:
        return None
    return entry_id, exec_id


def split_at_mark(fills: list[ExecutionReport], exec_id: str) -> list[ExecutionReport] | None:
    """The fills followed after the mark's `exec_id` (those up to it are logged), in order; None when
    it is not among them."""
    for i, fill in enumerate(fills):
        if fill.exec_id == exec_id:
            return fills[i + 1:]
    return None


def is_execution(rep: ExecutionReport) -> bool:
    """A report of one execution (a fill with its exec id), not a restated state."""
    return bool(rep.exec_id) and rep.kind in FILL_KINDS and rep.last_qty > 0.0


class FollowedFills:
    """The newest `kept` executions followed, each once (by exec id), oldest first."""

    def __init__(self, kept: int = FOLLOWED_FILLS_KEPT) -> None:
        self._kept = kept
        self._fills: OrderedDict[str, ExecutionReport] = OrderedDict()

    def __len__(self) -> int:
        return len(self._fills)

    def keep(self, rep: ExecutionReport) -> bool:
        """Remember `rep` if it is an execution not kept yet (the oldest goes past `kept`); True if kept."""
        if not is_execution(rep) or rep.exec_id in self._fills:
            return False
        fills = self._fills
        fills[rep.exec_id] = rep
        if len(fills) > self._kept:
            fills.popitem(last=False)
        return True

    def take(self) -> list[ExecutionReport]:
        """Every fill kept, oldest first; forgotten here (a promotion logs them once)."""
        out = list(self._fills.values())
        self._fills.clear()
        return out


def unlogged(fills: list[ExecutionReport], logged: Collection[str]) -> list[ExecutionReport]:
    """The `fills` whose exec id is not in `logged`, each exec id once, in the order given."""
    seen = set(logged)
    out = []
    for fill in fills:
        if fill.exec_id not in seen:
            seen.add(fill.exec_id)
            out.append(fill)
    return out
