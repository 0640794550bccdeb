"""The fallback path's client side and its stream fields are defined once in the nae_client
distribution (client/nae_client/fallback.py) and re-exported here for the node's modules; the node's
own rule for an entry taken late is below.

The validator reads that stream with the same checks; `request_id` makes both paths idempotent, so
a signal that also reaches the intake over ZeroMQ later executes once, or never when its entry was
refused as late (that refusal is remembered like any other). The client also drops the ZeroMQ frame
it gave up on (it re-creates its socket), so a late copy is rare.
"""

from __future__ import annotations

from nae_client.fallback import (  # noqa: F401
    DEFAULT_MAX_AGE_MS,
    FRAME_FIELD,
    MAX_AGE_FIELD,
    REPLY_FIELD,
    REPLY_TTL_S,
    FallbackChannel,
)


def lateness(max_age: bytes, appended_ns: int, taken_ns: int) -> str:
    """Why an entry taken at `taken_ns` is past the maximum age its client gave (`max_age`, the
    MAX_AGE_FIELD of the entry, in ms), or "" when it is not (no or a malformed max age: not late)."""
    try:
        limit_ns = int(max_age) * 1_000_000
    except ValueError:
        return ""
    if limit_ns <= 0 or taken_ns - appended_ns <= limit_ns:
        return ""
    return ("fallback entry taken " + str((taken_ns - appended_ns) // 1_000_000) + " ms after its append, past its"
            " max age of " + str(limit_ns // 1_000_000) + " ms")
