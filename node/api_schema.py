"""The HTTP API's bodies and answers, typed once (msgspec), and the OpenAPI document built from them.

`actors/api.py` serves the routes; this module says what they take and give. `openapi(...)` starts
from FastAPI's own document (paths, parameters, headers) and fills every request and response body
from these structs and from `node.messages` (`Signal`, `Reply`), through msgspec's JSON Schema, so the
published schema and the wire format come from the same definitions.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from node.messages import Reply, Signal

_BASE = dict(frozen=True, kw_only=True, forbid_unknown_fields=True)
REF = "#/components/schemas/{name}"


class StrategyBody(msgspec.Struct, **_BASE):
    """`/admin/kill`, `/admin/unkill`: one strategy, or (absent) the whole node."""

    strategy_id: str | None = None


class StateBody(msgspec.Struct, **_BASE):
    state: Literal["ACTIVE", "REDUCING", "HALTED"]
    strategy_id: str | None = None


class BreakerBody(msgspec.Struct, **_BASE):
    name: str  # "system", "execution" or "strategy:<id>"


class FailoverBody(msgspec.Struct, **_BASE):
    """`/admin/failover`: `to` an engine (default: the freshest standby); `/admin/broker-failover`:
    `to` a broker (default: the group's next live one). `group` defaults to the first."""

    to: str | None = None
    group: str | None = None


class GroupBody(msgspec.Struct, **_BASE):
    group: str | None = None


class AdminAnswer(msgspec.Struct, **_BASE):
    ok: bool
    action: str
    result: Any = None


class ErrorAnswer(msgspec.Struct, **_BASE):
    error: Literal["ADMIN_DISABLED", "FORBIDDEN", "BAD_REQUEST", "FAILED"]
    detail: str


class Component(msgspec.Struct, kw_only=True):
    status: str  # "up" | "down" | "lagging"
    detail: str = ""


class HealthAnswer(msgspec.Struct, **_BASE):
    """`/health`: every component (actors, `redis`, `postgresql`, `ledger_lag`) and its state."""

    status: Literal["ok", "degraded", "down"]
    ready: bool
    components: dict[str, Any]
    actors: dict[str, Literal["up", "down"]] = {}  # the older view: role -> up / down
    not_ready: list[str] = []
    detail: str = ""


class ReadyAnswer(msgspec.Struct, **_BASE):
    ready: bool
    not_ready: list[str] = []


class LiveAnswer(msgspec.Struct, **_BASE):
    live: bool


#: route -> (request body struct or None, {status: (answer struct, description)})
_ADMIN_ERRORS = {400: (ErrorAnswer, "a malformed body or a missing field"),
                 403: (ErrorAnswer, "admin disabled (no [api] admin_token) or X-Admin-Token wrong"),
                 409: (ErrorAnswer, "the node could not do it (no standby, unknown engine, ...)")}
ROUTES: dict[tuple[str, str], tuple[type | None, dict[int, tuple[type, str]]]] = {
    ("post", "/v1/signals"): (Signal, {
        200: (Reply, "ACCEPTED: durably logged; an order follows"),
        400: (Reply, "REJECTED before the gate: a header missing or malformed"),
        413: (Reply, "REJECTED FRAME_TOO_LARGE"),
        422: (Reply, "REJECTED by the gate or the risk checks: `reasons` say why"),
        503: (Reply, "ERROR TIMEOUT: no verdict in time; retry with the same request_id (never a second order)"),
    }),
    ("get", "/livez"): (None, {200: (LiveAnswer, "the API process answers")}),
    ("get", "/readyz"): (None, {200: (ReadyAnswer, "ready for signals"),
                                503: (ReadyAnswer, "not ready: `not_ready` says why")}),
    ("get", "/health"): (None, {200: (HealthAnswer, "every component up"),
                                503: (HealthAnswer, "a component is down or the node is not ready")}),
    ("post", "/admin/kill"): (StrategyBody, {200: (AdminAnswer, "kill switch on"), **_ADMIN_ERRORS}),
    ("post", "/admin/unkill"): (StrategyBody, {200: (AdminAnswer, "kill switch off"), **_ADMIN_ERRORS}),
    ("post", "/admin/pause/{strategy_id}"): (None, {200: (AdminAnswer, "strategy paused"), **_ADMIN_ERRORS}),
    ("post", "/admin/resume/{strategy_id}"): (None, {200: (AdminAnswer, "strategy resumed"), **_ADMIN_ERRORS}),
    ("post", "/admin/state"): (StateBody, {200: (AdminAnswer, "trading state set"), **_ADMIN_ERRORS}),
    ("post", "/admin/breaker/reset"): (BreakerBody, {200: (AdminAnswer, "breaker closed"), **_ADMIN_ERRORS}),
    ("post", "/admin/failover"): (FailoverBody, {200: (AdminAnswer, "new leader, new epoch"), **_ADMIN_ERRORS}),
    ("post", "/admin/failback"): (GroupBody, {200: (AdminAnswer, "back to the first engine"), **_ADMIN_ERRORS}),
    ("post", "/admin/broker-failover"): (FailoverBody, {200: (AdminAnswer, "group moved to another broker"),
                                                       **_ADMIN_ERRORS}),
}


_SIGNAL_HEADERS = (("X-Key-Id", "the id of the signing key"),
                   ("X-Timestamp", "signing time, integer nanoseconds since the epoch"),
                   ("X-Signature", "hex HMAC-SHA256(secret, X-Timestamp as 8 bytes big-endian + the raw body)"))
_ADMIN_HEADERS = (("X-Admin-Token", "the `[api] admin_token` of the node"),)


def _headers(pairs: tuple[tuple[str, str], ...]) -> list[dict[str, Any]]:
    return [{"name": n, "in": "header", "required": True, "description": d, "schema": {"type": "string"}}
            for n, d in pairs]


def openapi(base: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's document with every body of `ROUTES` described by its struct."""
    structs = {Signal, Reply, LiveAnswer, ReadyAnswer, HealthAnswer, AdminAnswer, ErrorAnswer, StrategyBody,
               StateBody, BreakerBody, FailoverBody, GroupBody}
    ordered = sorted(structs, key=lambda t: t.__name__)
    _, components = msgspec.json.schema_components(ordered, ref_template=REF)
    for struct in ordered:  # over HTTP a message is its fields (node.messages.to_builtins): no tag
        tag_field = struct.__struct_config__.tag_field
        schema = components.get(struct.__name__, {})
        if struct.__struct_config__.tag is not None and tag_field in schema.get("properties", {}):
            del schema["properties"][tag_field]
            schema["required"] = [r for r in schema.get("required", []) if r != tag_field]
    doc = dict(base)
    doc.setdefault("components", {}).setdefault("schemas", {}).update(components)
    paths = doc.setdefault("paths", {})
    for (method, path), (body, answers) in ROUTES.items():
        op = paths.setdefault(path, {}).setdefault(method, {})
        if body is not None:
            op["requestBody"] = {"required": body is Signal,
                                 "content": {"application/json": {"schema": {"$ref": REF.format(name=body.__name__)}}}}
        headers = _SIGNAL_HEADERS if path == "/v1/signals" else _ADMIN_HEADERS if path.startswith("/admin/") else ()
        if headers:
            named = {p.get("name", "").lower() for p in op.get("parameters", [])}
            op["parameters"] = op.get("parameters", []) + [h for h in _headers(headers) if h["name"].lower() not in named]
        op["responses"] = {str(code): {"description": text, "content": {"application/json": {
            "schema": {"$ref": REF.format(name=struct.__name__)}}}} for code, (struct, text) in answers.items()}
        op["responses"]["429"] = {"description": "REJECTED RATE_LIMITED: too many requests from this address",
                                  "content": {"application/json": {"schema": {"$ref": REF.format(name="Reply")}}}}
    metrics = paths.setdefault("/metrics", {}).setdefault("get", {})
    metrics["responses"] = {"200": {"description": "Prometheus text exposition (version 0.0.4)",
                                    "content": {"text/plain": {"schema": {"type": "string"}}}}}
    return doc
