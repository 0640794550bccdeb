"""What the client raises: one base, each error with a reason code and whether a retry may help."""

from __future__ import annotations


class ClientError(Exception):
    reason = "ERROR"
    retriable = False

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class TransportError(ClientError):
    """No answer in time: retry with the same `request_id` (the node never executes it twice)."""

    reason = "TIMEOUT"
    retriable = True


class StoreError(ClientError):
    """The fallback stream (Redis) could not be written or read."""

    reason = "STORE_UNAVAILABLE"
    retriable = True
