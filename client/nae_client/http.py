"""The seed's transport: `POST /v1/signals` on the node's HTTP API, for callers that cannot open ZeroMQ
(a firewall that passes HTTP only, a language without a ZeroMQ binding). Standard library only.

The body is the signal's JSON, signed in the headers (`X-Key-Id`, `X-Timestamp` ns, `X-Signature` hex
HMAC-SHA256 over the 8-byte timestamp + the exact body); the node judges it with the same gate as the
ZeroMQ intake and answers the verdict as JSON (200 ACCEPTED, 422 REJECTED, 400/413 for a bad request,
503 when its intake did not answer in time: retry with the same `request_id`).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from typing import Any, Mapping, MutableMapping

from nae_client.errors import TransportError
from nae_client.signing import http_headers


class HttpExecutionClient:
    def __init__(self, base_url: str, key_id: str, secret: str | bytes, timeout_s: float = 2.0) -> None:
        self.url = base_url.rstrip("/") + "/v1/signals"
        self.key_id = key_id
        self._secret = secret.encode() if isinstance(secret, str) else bytes(secret)
        self.timeout_s = timeout_s

    def send_execution_signal(self, signal: Mapping[str, Any]) -> dict[str, Any]:
        """A signal dict in (a missing `request_id` / `timestamp` is written into it, so the same dict
        again is a retry), the node's verdict as a dict out. `TransportError` when no verdict came."""
        if isinstance(signal, MutableMapping):
            signal.setdefault("request_id", uuid.uuid4().hex)
            signal.setdefault("timestamp", time.time())
        body = json.dumps(dict(signal), separators=(",", ":")).encode()
        request = urllib.request.Request(self.url, data=body, method="POST",
                                         headers=http_headers(self.key_id, self._secret, body, time.time_ns()))
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            text = exc.read()
            if exc.code == 503:
                raise TransportError("the node's intake did not answer in time (503): retry with the same request_id") from None
            try:
                return json.loads(text)
            except ValueError:
                raise TransportError("HTTP " + str(exc.code) + " without a verdict from " + self.url) from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise TransportError("no verdict from " + self.url + " within " + str(self.timeout_s) + " s ("
                                 + type(exc).__name__ + ")") from None
