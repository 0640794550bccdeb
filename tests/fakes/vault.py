"""A fake of HashiCorp Vault's HTTP API, enough for `node.secrets.read_vault` through the real hvac:
KV version 2 reads (`GET /v1/<mount>/data/<path>`), token checks (`X-Vault-Token`), AppRole login
(`POST /v1/auth/approle/login`), and switches for the failures a deployment meets (sealed, garbage).

It answers with Vault's documented shapes and status codes (403 permission denied, 404 no secret,
503 sealed); it runs on 127.0.0.1 on a free port in a thread of the test process.
"""

from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeVault:
    def __init__(self, token: str = "") -> None:
        self.token = token or "hvs." + secrets.token_hex(12)
        self.kv: dict[tuple[str, str], dict[str, Any]] = {}  # (mount, path) -> data
        self.approles: dict[str, str] = {}  # role_id -> secret_id
        self.sealed = False
        self.garbage = False  # answer 200 with a body that is not JSON
        self.requests: list[tuple[str, str]] = []
        self._issued: set[str] = {self.token}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def addr(self) -> str:
        return "http://127.0.0.1:" + str(self._server.server_address[1])

    def put(self, path: str, data: dict[str, Any], mount: str = "secret") -> None:
        self.kv[(mount, path)] = dict(data)

    def __enter__(self) -> "FakeVault":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        vault = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, body: Any) -> None:
                raw = b"{not json" if vault.garbage else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                vault.requests.append(("GET", self.path))
                if vault.sealed:
                    return self._answer(503, {"errors": ["Vault is sealed"]})
                if self.headers.get("X-Vault-Token") not in vault._issued:
                    return self._answer(403, {"errors": ["permission denied"]})
                parts = self.path.split("?", 1)[0].strip("/").split("/")
                if len(parts) < 4 or parts[0] != "v1" or parts[2] != "data":
                    return self._answer(404, {"errors": []})
                data = vault.kv.get((parts[1], "/".join(parts[3:])))
                if data is None:
                    return self._answer(404, {"errors": []})
                meta = {"created_time": "2026-11-29T00:00:00Z", "deletion_time": "", "destroyed": False, "version": 1}
                return self._answer(200, {"request_id": secrets.token_hex(8), "lease_id": "", "renewable": False,
                                          "lease_duration": 0, "data": {"data": data, "metadata": meta},
                                          "wrap_info": None, "warnings": None, "auth": None})

            def do_POST(self) -> None:  # noqa: N802
                vault.requests.append(("POST", self.path))
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path.rstrip("/") != "/v1/auth/approle/login":
                    return self._answer(404, {"errors": []})
                if vault.approles.get(body.get("role_id", "")) != body.get("secret_id") or not body.get("secret_id"):
                    return self._answer(400, {"errors": ["invalid role or secret ID"]})
                token = "hvs." + secrets.token_hex(12)
                vault._issued.add(token)
                return self._answer(200, {"auth": {"client_token": token, "policies": ["nae"], "lease_duration": 3600,
                                                   "renewable": True}})

        return Handler
