"""Typed errors. Each carries a reason code and its own retry decision; retry logic reads only the flags."""

from __future__ import annotations

from nae_client import errors as client_errors
from node.reasons import Reason


class NodeError(Exception):
    """Base of every error the node raises on purpose."""

    reason: Reason = Reason.INTERNAL
    retriable: bool = False

    def __init__(self, message: str, reason: Reason | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class ConfigError(NodeError):
    """Configuration that cannot run: names the setting and what is wrong with it."""


class SignalRejected(NodeError):
    """A signal failed authentication, schema or risk checks."""


class TransportError(NodeError, client_errors.TransportError):
    """A socket did not answer in time or the peer went away (the client's `TransportError`, which
    the client raises, catches it too)."""

    retriable = True
    reason = Reason.TIMEOUT


class StoreError(NodeError, client_errors.StoreError):
    """Redis or PostgreSQL is unreachable or refused a write (a `nae_client.errors.StoreError` too)."""

    retriable = True
    reason = Reason.STORE_UNAVAILABLE


class BrokerError(NodeError):
    """A broker refused or could not be reached; `retriable` says whether to try again."""

    def __init__(self, message: str, reason: Reason = Reason.VENUE_REJECT, retriable: bool = False) -> None:
        super().__init__(message, reason)
        self.retriable = retriable
