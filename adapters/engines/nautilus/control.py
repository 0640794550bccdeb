"""The control channel between a Nautilus engine host and its kernel child: typed, defined once.

One PAIR socket, one msgpack frame a message, each a tagged struct (no Nautilus import: both
sides load it). The host sends a `KernelCommand` and waits for the child's `KernelReply`; the
child announces itself with `KernelReady` (or `KernelFailed`, then exits 2).
"""

from __future__ import annotations

import msgspec

from node.messages import ExecutionReport
from node.stats import KernelStats


class _Msg(msgspec.Struct, frozen=True, tag_field="op"):
    pass


# ---------------------------------------------------------------- host -> child


class StopKernel(_Msg, tag="stop"):
    """Stop cleanly (node.stop_async, then kernel.dispose); answered `KernelStopped`."""


class AskKernelStats(_Msg, tag="stats"):
    """Answered `KernelStatsReport`."""


class SetKernelEpoch(_Msg, tag="epoch"):
    """Submit under `epoch` from now on; answered `KernelEpochSet`."""

    epoch: int


class PromoteKernel(_Msg, tag="promote"):
    """A standby starts submitting under `epoch` once its first `expect` intake frames and Nautilus's
    queues are processed; answered `KernelPromoted`, or `KernelFailed` (it stays standby)."""

    epoch: int
    expect: int


class DemoteKernel(_Msg, tag="demote"):
    """Stop submitting at once (hold and follow again); answered `KernelDemoted`."""


class CancelOpenOrders(_Msg, tag="cancel_open"):
    """Cancel every open order (of `strategy_id`, or all) through Nautilus (the kill switch's
    `--cancel-open`); a standby cancels nothing. Answered `KernelCanceled`."""

    strategy_id: str | None = None


KernelCommand = StopKernel | AskKernelStats | SetKernelEpoch | PromoteKernel | DemoteKernel | CancelOpenOrders


# ---------------------------------------------------------------- child -> host


class KernelReady(_Msg, tag="ready"):
    intake: str
    events: str
    pid: int
    startup_ms: float


class KernelFailed(_Msg, tag="failed"):
    error: str


class KernelStopped(_Msg, tag="stopped"):
    pass


class KernelStatsReport(_Msg, tag="stats"):
    stats: KernelStats


class KernelEpochSet(_Msg, tag="epoch"):
    epoch: int


class KernelPromoted(_Msg, tag="promote"):
    """What the promotion did (`standby.plan_promotion`): held orders sent, adopted, left in flight
    (the broker's gate took them), fills swept, the time it took in the child, and the fills it
    followed as a standby."""

    epoch: int
    resent: int = 0
    adopted: int = 0
    in_flight: int = 0
    swept: int = 0
    took_ms: float = 0.0
    amend_cancels: int = 0  # held cancels (and replaces' cancels) sent: the broker lists the original open
    amend_refused: int = 0  # held replaces refused AMEND_NOT_LIVE (the original never live)
    amend_adopted: int = 0  # replacements the old leader sent: taken from the broker, not sent again
    #: the newest fills the standby followed (`node.followed`, oldest first): the host appends to
    #: `execution.events` those it lacks, ahead of this engine's own reports
    followed: list[ExecutionReport] = []


class KernelDemoted(_Msg, tag="demote"):
    pass


class KernelCanceled(_Msg, tag="cancel_open"):
    canceled: int
    client_order_ids: list[str] = []  # the first 1,000


KernelReply = (KernelReady | KernelFailed | KernelStopped | KernelStatsReport | KernelEpochSet | KernelPromoted
               | KernelDemoted | KernelCanceled)

encode_control = msgspec.msgpack.Encoder().encode
command_decoder = msgspec.msgpack.Decoder(KernelCommand)
reply_decoder = msgspec.msgpack.Decoder(KernelReply)
