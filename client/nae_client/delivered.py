"""Each fill delivered once: the client's memory of the exec ids it has handed to the caller.

A fill can reach a subscriber twice: after a failover the new leader publishes the fills it books
from the broker's answer, and the old leader may have published some of them already (the node keeps
the venue's exec id on every copy). The client contract (README "The client") is that a subscriber
sees each execution once: `Delivered.first` says whether a report is the first with its exec id.
Reports without an exec id (NEW, CANCELED, REJECTED, UNKNOWN, and the state a new leader restates with
reason RECOVERED) carry no execution and always pass. The memory is bounded (oldest forgotten first);
`remember=0` delivers every copy (a test that counts what the node publishes).
"""

from __future__ import annotations

from collections import OrderedDict

from nae_client.wire import ExecKind, ExecutionReport

#: exec ids remembered: far more than the fills of any failover's window
DEFAULT_REMEMBER = 1_000_000
_FILL_KINDS = (ExecKind.FILL, ExecKind.PARTIAL_FILL)


class Delivered:
    __slots__ = ("_seen", "_max", "repeats")

    def __init__(self, remember: int = DEFAULT_REMEMBER) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._max = remember
        self.repeats = 0  # fills dropped: their exec id was delivered already

    def first(self, report: ExecutionReport) -> bool:
        """True if `report` is to be delivered; False for a fill whose exec id was delivered already."""
        exec_id = report.exec_id
        if not exec_id or report.kind not in _FILL_KINDS:
            return True
        seen = self._seen
        if exec_id in seen:
            self.repeats += 1
            return False
        seen[exec_id] = None
        if len(seen) > self._max:
            seen.popitem(last=False)
        return True
