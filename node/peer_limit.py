"""The per-peer limit at the ZeroMQ intake (pure logic, clock injected, bounded in memory).

A peer is one ZeroMQ connection, named by its ROUTER routing identity. ZeroMQ already reads the
peers' queues in turn (fair queuing), so a flooder cannot push an honest peer's frame out of a
wake-up; what it can do is fill every wake-up with frames that each cost the gate a decode and an
HMAC before they are refused, so the honest frame's reply waits for all of them. So:

- Each peer has a token bucket of frames that failed before authentication (`UNAUTHENTICATED`:
  malformed, too large, unsigned, badly signed, unknown key, stale), refilled at
  `intake.peer_unauthenticated_per_sec` up to `peer_unauthenticated_burst`. A well-behaved peer
  never spends a token, and its frames cost one dictionary look-up more.
- While a peer's bucket is empty, each of its frames is answered with one reply encoded once,
  `REJECTED RATE_LIMITED` with no request id (the frame is not even decoded), and counted: never a
  silent drop, never a judgement.
- A wake-up stops reading after `peer_refusals_per_wake` such refusals: what waits stays in
  ZeroMQ's per-peer queues, and the replies of the wake-up (an honest peer's among them) go out now.
- At most `max_peers` buckets are kept, least recently seen dropped first (`node.ratelimit`).

A signed flood is the per-key bucket's business (`node.intake.SignalGate`), after the signature.
"""

from __future__ import annotations

from node.config import IntakeConfig
from node.messages import Reply, Status, encode
from node.reasons import Reason
from node.ratelimit import TokenBuckets

#: refusals that say the frame was never authenticated: each costs its peer a token
UNAUTHENTICATED = frozenset({
    Reason.FRAME_TOO_LARGE, Reason.MALFORMED_FRAME, Reason.SIGNATURE_MISSING, Reason.SIGNATURE_INVALID,
    Reason.UNKNOWN_KEY, Reason.STALE_TIMESTAMP,
})  # fmt: skip


class PeerLimiter:
    """Which peers' frames are judged; the rest get `refusal` (bytes, encoded once)."""

    __slots__ = ("_buckets", "refusals_per_wake", "refusal", "limited")

    def __init__(self, intake: IntakeConfig) -> None:
        self._buckets = TokenBuckets(
            intake.peer_unauthenticated_per_sec, intake.peer_unauthenticated_burst, intake.max_peers
        )
        self.refusals_per_wake = intake.peer_refusals_per_wake
        self.refusal = encode(Reply(
            status=Status.REJECTED, request_id="", reasons=[Reason.RATE_LIMITED],
            detail="this connection sent too many unauthenticated frames (intake.peer_unauthenticated_per_sec); "
                   "frame not judged, retry later",
        ))  # fmt: skip
        self.limited = 0  # frames answered with `refusal`

    def __len__(self) -> int:
        return len(self._buckets)

    def admits(self, peer: bytes, now_ns: int) -> bool:
        """Whether this peer's frame is judged (False: answer it `refusal`; counted here)."""
        if self._buckets.ready(peer, now_ns):
            return True
        self.limited += 1
        return False

    def judged(self, peer: bytes, reply: Reply | None, now_ns: int) -> None:
        """After the gate's verdict: a refusal before authentication costs the peer a token."""
        if reply is not None and reply.status is Status.REJECTED:
            reasons = reply.reasons
            if reasons and reasons[0] in UNAUTHENTICATED:
                self._buckets.take(peer, now_ns)

    def charge(self, peer: bytes, now_ns: int) -> None:
        """One frame of this peer failed before authentication."""
        self._buckets.take(peer, now_ns)
