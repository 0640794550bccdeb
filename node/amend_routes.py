"""Where a cancel or replace of a strategy in modes goes (pure logic, no I/O).

The validator stamps every accepted signal of a strategy in `[[modes]]` with its route
(node.modes). It also remembers, per `request_id`, the route each order-making signal took, so an
amend naming that `request_id` is stamped for the group(s) that hold its original, and only those:

| original's stamp | the amend's stamp | goes to |
|---|---|---|
| PAPER, CANARY_PAPER (or an amend that went there) | AMEND_PAPER | the paper group |
| LIVE, CANARY_LIVE (or an amend that went there) | AMEND_LIVE | the live group |
| SHADOW (or an amend that went there) | AMEND_SHADOW | the live group; the paper group as the copy's amend |
| not remembered | AMEND_UNKNOWN | the live group alone, which answers for it |

So an amend whose original neither group holds gets one refusal (AMEND_UNKNOWN_ORIGINAL, from the
live group's engine, on the amend's own client order id), and a group that does not hold the
original never sees the amend, so it refuses nothing. The live group answers the unknown ones because
an order placed before its strategy joined `[[modes]]` (routed, not stamped) is there: a trader can
still cancel it (sending the amend to the paper group would refuse the cancel of a live order). A remembered route that is wrong (a signal
stamped whose append then failed) only sends the amend to a group that answers "unknown" itself.

Memory stays bounded: an order's route moves from `open` to `done` when the validator books its
final report (FILL, CANCELED, REJECTED), and `done` keeps the latest `keep_done` (an amend of an
order finished longer ago goes to the live group: AMEND_ORDER_DONE if it was a live order, else
AMEND_UNKNOWN_ORIGINAL); `open` is
capped at `keep_open` (oldest dropped). A cancel makes no order, so its own `request_id` is not kept.
Both maps travel in the validator's risk snapshot; the signals and reports logged after it are
applied again at a restart (`record` / `finished` are idempotent).
"""

from __future__ import annotations

from node.messages import AmendKind, Signal
from node.modes import Route

KEEP_DONE = 10_000
KEEP_OPEN = 500_000

#: the route an amend takes, from its original's stamp
_AMEND_OF: dict[int, Route] = {
    Route.PAPER: Route.AMEND_PAPER, Route.CANARY_PAPER: Route.AMEND_PAPER, Route.AMEND_PAPER: Route.AMEND_PAPER,
    Route.LIVE: Route.AMEND_LIVE, Route.CANARY_LIVE: Route.AMEND_LIVE, Route.AMEND_LIVE: Route.AMEND_LIVE,
    Route.SHADOW: Route.AMEND_SHADOW, Route.AMEND_SHADOW: Route.AMEND_SHADOW,
    Route.AMEND: Route.AMEND,  # logged before routes were remembered: both groups, the holder acts
}  # fmt: skip


class AmendRoutes:
    """request_id -> the route its order took, for the strategies in modes."""

    def __init__(self, keep_done: int = KEEP_DONE, keep_open: int = KEEP_OPEN) -> None:
        self.open: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self._keep_done = keep_done
        self._keep_open = keep_open

    def stamp(self, signal: Signal, route: int) -> int:
        """The final stamp of an accepted signal whose mode stamp is `route` (node.modes.ModeTable.stamp),
        remembered when the signal makes an order."""
        if route == Route.ROUTER:
            return route
        amend = signal.amend
        if amend is not None:
            route = self.amend_route(amend.original_request_id)
            if amend.kind is AmendKind.CANCEL:
                return route  # a cancel makes no order: nothing to remember
        self.record(signal.request_id, route)
        return route

    def amend_route(self, original_request_id: str) -> Route:
        """Where an amend of `original_request_id` goes (AMEND_UNKNOWN: not remembered)."""
        got = self.open.get(original_request_id)
        if got is None:
            got = self.done.get(original_request_id)
        return _AMEND_OF.get(got, Route.AMEND_UNKNOWN) if got is not None else Route.AMEND_UNKNOWN

    def record(self, request_id: str, route: int) -> None:
        if request_id in self.done:
            return  # a replayed signal whose order already finished
        opened = self.open
        if request_id not in opened and len(opened) >= self._keep_open:
            del opened[next(iter(opened))]
        opened[request_id] = route

    def finished(self, request_id: str) -> None:
        """The order of `request_id` is done: its route is kept among the latest finished."""
        route = self.open.pop(request_id, None)
        if route is None:
            return
        done = self.done
        done[request_id] = route
        while len(done) > self._keep_done:
            del done[next(iter(done))]

    def restore(self, opened: dict[str, int], done: dict[str, int]) -> None:
        self.open = dict(opened)
        self.done = dict(done)
