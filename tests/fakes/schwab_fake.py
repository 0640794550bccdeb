"""A local HTTP server speaking Schwab's Trader API and OAuth token endpoint, for tests (no network here).

What it serves (paths and JSON shapes as Schwab documents them, what schwab-py sends):

- `POST /v1/oauth/token` (grant_type=refresh_token, HTTP Basic app key/secret): a new access token
  (`expires_in` = `access_ttl_s`), the refresh token kept; `invalid_grant` once `revoke_login()`.
- Every `/trader/v1/...` call needs `Authorization: Bearer <a live access token>`: else 401.
- `POST .../accounts/{hash}/orders`: 201, empty body, `Location: .../orders/{orderId}`; a MARKET
  order fills at once at `price_of(symbol)` (in `fill_legs` executions: partial fills); LIMIT / STOP
  orders rest (WORKING) until `fill(order_id, qty, px)`; quantity > `max_quantity` or symbol in
  `reject_symbols` -> 400 with a message (Schwab's refusal, nothing placed).
- `GET .../orders` (fromEnteredTime / toEnteredTime), `GET .../orders/{id}`, `DELETE .../orders/{id}`
  (WORKING -> CANCELED), `PUT .../orders/{id}` (replace: the old order REPLACED, a new one made,
  201 + Location), `GET .../accounts/{hash}?fields=positions` (positions and balances).

Faults, queued per request kind with `fail_next(kind, fault)`, kind in "place", "cancel",
"replace", "orders", "order", "account", "prefs", "token": "401" (this token no longer valid), "429",
"500" (nothing done), "lose" (the request IS carried out, then the connection is closed with no
answer: an order accepted whose response was lost), "drop" (nothing done, the connection closed with no
answer: a request lost on its way; the client cannot tell it from "lose"), "hang" (carried out,
answered after `hang_s`: longer than the client waits).

`GET /trader/v1/userPreference`: the account and `streamerInfo` (the URL of the fake's streamer,
`tests/fakes/schwab_streamer.py`, and the customer / correl ids its LOGIN and SUBS need): every
order event (created, accepted, each execution, filled, canceled, replaced) is pushed there on
`ACCT_ACTIVITY`. `streamer` is that server (its faults: drop_next, kill, refuse, send_raw).

`placed` records every order the fake made, in order: the broker's own record a ledger is compared with.

The account (`GET .../accounts/{hash}?fields=positions`): `currentBalances.cashBalance` starts at
`cash` and moves with every execution (bought - sold) and `commission_per_fill` (Schwab's orders
answer names no fee: like its regulatory fees, they show in the cash only); each position carries
`averagePrice` (average cost, fees apart), `marketValue` (at `price_of`), `longOpenProfitLoss` /
`shortOpenProfitLoss`, as Schwab's positions do. `edit_position`, `adjust_cash`, `adjust_cost`:
changes at the broker with no order (a journal, a fee charged apart, a cost-basis correction).

Options: a leg with `assetType` OPTION takes Schwab's padded OCC symbol (`AAPL  250117C00150000`:
the root padded to 6, 21 characters) and an option instruction (BUY_TO_OPEN, SELL_TO_CLOSE, ...);
anything else for an option (an OCC symbol as EQUITY, an unpadded one, BUY) is refused 400, nothing
placed. Prices stay per share (`prices` by the padded or the unpadded symbol); every dollar figure is
x `option_multiplier` (100) a contract: the cash an execution moves, `marketValue`, the open PnL.
An option position's instrument is an AccountOption (`assetType` OPTION, `putCall`,
`underlyingSymbol`, and `optionMultiplier` unless `send_option_multiplier` is False).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import secrets
import threading
import time
from collections import defaultdict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


def _streamer_class() -> type:
    """`schwab_streamer.SchwabStreamer`, loaded beside this file: outside pytest's tree (bench/)
    schwab-py's own top-level `tests` package shadows the repository's."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("nae_fakes_schwab_streamer",
                                                  Path(__file__).with_name("schwab_streamer.py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.SchwabStreamer


SchwabStreamer = _streamer_class()

_ORDERS = re.compile(r"^/trader/v1/accounts/([^/]+)/orders$")
_ORDER = re.compile(r"^/trader/v1/accounts/([^/]+)/orders/(\d+)$")
_ACCOUNT = re.compile(r"^/trader/v1/accounts/([^/]+)$")
#: Schwab's option symbol: the root padded to 6, yymmdd, C/P, strike x 1000 in 8 digits (21 characters)
_SCHWAB_OCC = re.compile(r"^[A-Z0-9. ]{6}\d{6}[CP]\d{8}$")
_ANY_OCC = re.compile(r"^[A-Z0-9.]{1,6} *\d{6}[CP]\d{8}$")
_OPTION_INSTRUCTIONS = frozenset({"BUY_TO_OPEN", "BUY_TO_CLOSE", "SELL_TO_OPEN", "SELL_TO_CLOSE"})


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+0000")


class SchwabFake:
    def __init__(self, account_hash: str = "HASH1", api_key: str = "app-key", app_secret: str = "app-secret",
                 access_ttl_s: int = 1800) -> None:
        self.account_hash = account_hash
        self.api_key = api_key
        self.app_secret = app_secret
        self.access_ttl_s = access_ttl_s
        self.refresh_token = "refresh-" + secrets.token_hex(8)
        self._access: dict[str, float] = {}  # access token -> expiry (epoch s)
        self._lock = threading.RLock()
        self._ids = itertools.count(1001)
        self._activity = itertools.count(5001)
        self.orders: dict[int, dict[str, Any]] = {}
        self.placed: list[dict[str, Any]] = []
        self.requests: dict[str, int] = defaultdict(int)
        self._faults: dict[str, deque[str]] = defaultdict(deque)
        self.login_revoked = False
        self.max_quantity = 1_000_000
        self.reject_symbols: set[str] = set()
        self.fill_legs = 1
        self.prices: dict[str, float] = {}
        self.hang_s = 3.0
        self.cash = 1_000_000.0
        self.commission_per_fill = 0.0
        self.position_edits: dict[str, float] = {}
        self.cost_edits: dict[str, float] = {}
        self.option_multiplier = 100.0
        self.send_option_multiplier = True
        self._server: ThreadingHTTPServer | None = None
        self.base_url = ""
        self.streamer = SchwabStreamer(self._authorized_token, "12345678", "cust-" + secrets.token_hex(4),
                                       "correl-" + secrets.token_hex(4))

    # ---------------------------------------------------------------- test controls

    def start(self) -> "SchwabFake":
        fake = self

        class Handler(_Handler):
            owner = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base_url = "http://127.0.0.1:" + str(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True, name="schwab-fake").start()
        self.streamer.start()
        return self

    def stop(self) -> None:
        self.streamer.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def issue_token(self, created_s: float | None = None, expires_in: int | None = None) -> dict:
        """A token as schwab-py stores it ({creation_timestamp, token}); its access token is live here."""
        access = "access-" + secrets.token_hex(8)
        ttl = self.access_ttl_s if expires_in is None else expires_in
        with self._lock:
            self._access[access] = time.time() + ttl
        now = time.time()
        return {
            "creation_timestamp": int(now if created_s is None else created_s),
            "token": {"access_token": access, "refresh_token": self.refresh_token, "token_type": "Bearer",
                      "expires_in": ttl, "expires_at": int(now + ttl), "scope": "api"},
        }  # fmt: skip

    def expire_access_tokens(self) -> None:
        """Every access token handed out is no longer valid (the next call gets 401)."""
        with self._lock:
            self._access.clear()

    def revoke_login(self) -> None:
        self.login_revoked = True

    def fail_next(self, kind: str, fault: str, times: int = 1) -> None:
        with self._lock:
            self._faults[kind].extend([fault] * times)

    def clear_faults(self, kind: str) -> None:
        """The faults still queued for `kind` are dropped (its next requests work)."""
        with self._lock:
            self._faults.pop(kind, None)

    def fill(self, order_id: int, qty: float, price: float) -> None:
        with self._lock:
            self._fill(self.orders[order_id], qty, price)

    def price_of(self, symbol: str) -> float:
        """Per share (an option's premium per share), by Schwab's spelling or the unpadded one."""
        return self.prices.get(symbol, self.prices.get(symbol.replace(" ", ""), 100.0))

    def multiplier_of(self, symbol: str) -> float:
        """Dollars per unit of price for one contract: an option's `option_multiplier`, else 1."""
        return self.option_multiplier if _ANY_OCC.match(symbol) else 1.0

    def place(self, symbol: str, instruction: str, qty: float) -> int:
        """An order placed at Schwab by someone else (by hand, another program): a MARKET order that
        fills at once, as through the API. Returns its orderId."""
        spec = {"orderType": "MARKET", "session": "NORMAL", "duration": "DAY", "orderStrategyType": "SINGLE",
                "orderLegCollection": [{"instruction": instruction, "quantity": qty,
                                        "instrument": {"symbol": symbol, "assetType": "EQUITY"}}]}
        with self._lock:
            return self._new_order(spec)["orderId"]

    def edit_position(self, symbol: str, qty: float) -> None:
        """A position change with no order (a journal, a transfer): the account shows it, no order does."""
        with self._lock:
            self.position_edits[symbol] = self.position_edits.get(symbol, 0.0) + qty

    def adjust_cash(self, amount: float) -> None:
        """Cash in or out with no order (a fee charged apart, a transfer)."""
        with self._lock:
            self.cash += amount

    def adjust_cost(self, symbol: str, delta: float) -> None:
        """The position's average price moved by `delta` with no execution (a cost-basis correction)."""
        with self._lock:
            self.cost_edits[symbol] = self.cost_edits.get(symbol, 0.0) + delta

    def valuation(self) -> dict[str, tuple[float, float]]:
        """symbol -> (net quantity, average price) from the executions (average cost; a sale
        at or across zero opens the rest at its price), plus the edits."""
        book: dict[str, list[float]] = {}
        with self._lock:
            execs = sorted(
                ((a["activityId"], o["orderLegCollection"][0]["instrument"]["symbol"],
                  1.0 if o["orderLegCollection"][0]["instruction"].startswith("BUY") else -1.0, a["quantity"],
                  a["executionLegs"][0]["price"])
                 for o in self.orders.values() for a in o["orderActivityCollection"]))
            for _, sym, sign, qty, px in execs:
                b = book.setdefault(sym, [0.0, 0.0])
                q = sign * qty
                if b[0] * q >= 0:
                    b[1] = (b[1] * b[0] + px * q) / (b[0] + q) if b[0] + q else 0.0
                elif abs(q) > abs(b[0]):
                    b[1] = px
                b[0] += q
            for sym, q in self.position_edits.items():
                book.setdefault(sym, [0.0, self.price_of(sym)])[0] += q
            for sym, d in self.cost_edits.items():
                book.setdefault(sym, [0.0, 0.0])[1] += d
        return {s: (q, avg) for s, (q, avg) in book.items() if q}

    def positions(self) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float, self.position_edits)
        with self._lock:
            for o in self.orders.values():
                sign = 1.0 if o["orderLegCollection"][0]["instruction"].startswith("BUY") else -1.0
                out[o["orderLegCollection"][0]["instrument"]["symbol"]] += sign * o["filledQuantity"]
        return {k: v for k, v in out.items() if v}

    # ---------------------------------------------------------------- the broker's behaviour (under the lock)

    def _fault(self, kind: str) -> str:
        q = self._faults.get(kind)
        return q.popleft() if q else ""

    def _authorized(self, header: str) -> bool:
        return self._authorized_token(header[7:] if header.startswith("Bearer ") else "")

    def _authorized_token(self, token: str) -> bool:
        exp = self._access.get(token)
        return exp is not None and exp > time.time()

    def _preferences(self) -> dict:
        s = self.streamer
        return {
            "accounts": [{"accountNumber": s.account_number, "primaryAccount": True, "type": "BROKERAGE",
                          "nickName": "fake", "displayAcctId": "...678", "autoPositionEffect": False}],
            "streamerInfo": [{"streamerSocketUrl": s.url, "schwabClientCustomerId": s.customer_id,
                              "schwabClientCorrelId": s.correl_id, "schwabClientChannel": "N9",
                              "schwabClientFunctionId": "APIAPP"}],
            "offers": [{"level2Permissions": False, "mktDataPermission": "NP"}],
        }  # fmt: skip

    def _new_order(self, spec: dict) -> dict:
        leg = spec["orderLegCollection"][0]
        oid = next(self._ids)
        qty = float(leg["quantity"])
        order = {
            "session": spec.get("session", "NORMAL"), "duration": spec.get("duration", "DAY"),
            "orderType": spec["orderType"], "complexOrderStrategyType": "NONE", "quantity": qty,
            "filledQuantity": 0.0, "remainingQuantity": qty, "requestedDestination": "AUTO",
            "orderStrategyType": "SINGLE", "orderId": oid, "cancelable": True, "editable": True,
            "status": "WORKING", "enteredTime": _iso(time.time()), "accountNumber": 12345678,
            "orderLegCollection": [{
                "orderLegType": leg["instrument"].get("assetType", "EQUITY"), "legId": 1,
                "instrument": dict(leg["instrument"]), "instruction": leg["instruction"],
                "positionEffect": "OPENING", "quantity": qty,
            }],
            "orderActivityCollection": [],
        }  # fmt: skip
        if "price" in spec:
            order["price"] = float(spec["price"])
        if "stopPrice" in spec:
            order["stopPrice"] = float(spec["stopPrice"])
        self.orders[oid] = order
        self.placed.append(order)
        self.streamer.publish(oid, "OrderCreated")
        self.streamer.publish(oid, "OrderAccepted")
        if spec["orderType"] == "MARKET":
            px = self.price_of(leg["instrument"]["symbol"])
            legs = max(1, self.fill_legs)
            each = qty // legs if qty >= legs else qty
            left = qty
            while left > 0:
                q = each if left - each >= each else left
                self._fill(order, q, px)
                left -= q
        return order

    def _fill(self, order: dict, qty: float, price: float) -> None:
        if order["status"] not in ("WORKING", "QUEUED", "ACCEPTED"):
            return
        qty = min(qty, order["remainingQuantity"])
        sign = 1.0 if order["orderLegCollection"][0]["instruction"].startswith("BUY") else -1.0
        self.cash -= sign * qty * price * self.multiplier_of(order["orderLegCollection"][0]["instrument"]["symbol"])
        self.cash -= self.commission_per_fill
        order["filledQuantity"] += qty
        order["remainingQuantity"] -= qty
        order["orderActivityCollection"].append({
            "activityType": "EXECUTION", "activityId": next(self._activity), "executionType": "FILL",
            "quantity": qty, "orderRemainingQuantity": order["remainingQuantity"],
            "executionLegs": [{"legId": 1, "quantity": qty, "mismarkedQuantity": 0.0, "price": price,
                               "time": _iso(time.time())}],
        })  # fmt: skip
        execution = order["orderActivityCollection"][-1]
        self.streamer.publish(order["orderId"], "ExecutionCreated", {"ExecutionCreatedEventExecutionInfo": {
            "ExecutionInfo": {"ExecutionId": str(execution["activityId"]), "ExecutionQuantity": qty,
                              "ExecutionPrice": price}}})
        if order["remainingQuantity"] <= 0:
            order["status"] = "FILLED"
            order["cancelable"] = order["editable"] = False
            self.streamer.publish(order["orderId"], "OrderFillCompleted")

    def _instrument(self, symbol: str) -> dict[str, Any]:
        """A position's instrument: an AccountEquity, or an AccountOption for an OCC symbol."""
        if not _ANY_OCC.match(symbol):
            return {"symbol": symbol, "assetType": "EQUITY"}
        out: dict[str, Any] = {"symbol": symbol, "assetType": "OPTION", "underlyingSymbol": symbol[:-15].strip(),
                               "putCall": "CALL" if symbol[-9] == "C" else "PUT", "type": "VANILLA"}
        if self.send_option_multiplier:
            out["optionMultiplier"] = self.option_multiplier
        return out

    def _refusal(self, spec: dict) -> str:
        try:
            leg = spec["orderLegCollection"][0]
            qty = float(leg["quantity"])
            sym = leg["instrument"]["symbol"]
        except (KeyError, IndexError, TypeError, ValueError):
            return "malformed order"
        if sym in self.reject_symbols:
            return "symbol " + sym + " is not tradable"
        option = leg["instrument"].get("assetType") == "OPTION"
        if option != bool(_ANY_OCC.match(sym)) or (option and not _SCHWAB_OCC.match(sym)):
            return "symbol " + sym + " is not a valid " + ("option" if option else "equity") + " symbol"
        if option != (leg.get("instruction") in _OPTION_INSTRUCTIONS):
            return "instruction " + str(leg.get("instruction")) + " is not valid for the instrument"
        if qty > self.max_quantity:
            return "quantity exceeds the account's limit"
        return ""


class _Handler(BaseHTTPRequestHandler):
    owner: SchwabFake
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        self._route("POST")

    def do_GET(self) -> None:
        self._route("GET")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def _route(self, method: str) -> None:
        fake = self.owner
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if url.path == "/v1/oauth/token" and method == "POST":
            return self._token(raw)
        kind = _kind(method, url.path)
        with fake._lock:
            fake.requests[kind] += 1
            fault = fake._fault(kind)
            if fault == "401" or not fake._authorized(self.headers.get("Authorization", "")):
                return self._send(401, {"message": "access token invalid or expired"})
            if fault == "429":
                return self._send(429, {"message": "too many requests"})
            if fault == "500":
                return self._send(500, {"message": "internal error"})
            if fault == "drop":
                self.close_connection = True
                self.connection.shutdown(2)  # nothing placed, and nothing said
                return None
            status, body, headers = self._do(kind, method, url, raw)
        if fault == "lose":
            self.close_connection = True
            self.connection.shutdown(2)  # the order is in; its answer never arrives
            return
        if fault == "hang":
            time.sleep(fake.hang_s)
        self._send(status, body, headers)

    def _do(self, kind: str, method: str, url: Any, raw: bytes) -> tuple[int, Any, dict]:
        fake = self.owner
        if kind == "prefs":
            return 200, fake._preferences(), {}
        m = _ORDERS.match(url.path) or _ORDER.match(url.path) or _ACCOUNT.match(url.path)
        if m is None or m.group(1) != fake.account_hash:
            return 404, {"message": "no such account"}, {}
        base = "/trader/v1/accounts/" + fake.account_hash + "/orders/"
        if kind == "place":
            spec = json.loads(raw or b"{}")
            why = fake._refusal(spec)
            if why:
                return 400, {"message": why}, {}
            order = fake._new_order(spec)
            return 201, None, {"Location": "https://api.schwabapi.com" + base + str(order["orderId"])}
        if kind == "orders":
            q = parse_qs(url.query)
            since = _parse(q.get("fromEnteredTime", [""])[0])
            out = [o for o in fake.orders.values() if since is None or _parse(o["enteredTime"]) >= since]
            return 200, out, {}
        if kind == "account":
            bp = fake.cash
            positions = []
            for s, (q, avg) in fake.valuation().items():
                mark, per = fake.price_of(s), fake.multiplier_of(s)
                open_pl = (mark - avg) * q * per
                positions.append({
                    "instrument": fake._instrument(s), "longQuantity": max(q, 0.0),
                    "shortQuantity": max(-q, 0.0), "averagePrice": avg, "marketValue": mark * q * per,
                    "longOpenProfitLoss": open_pl if q > 0 else 0.0, "shortOpenProfitLoss": open_pl if q < 0 else 0.0,
                })  # fmt: skip
            return 200, {"securitiesAccount": {"accountNumber": "12345678", "positions": positions,
                                               "currentBalances": {"cashBalance": fake.cash, "buyingPower": bp,
                                                                   "liquidationValue": fake.cash}}}, {}
        order = fake.orders.get(int(m.group(2)))
        if order is None:
            return 404, {"message": "order not found"}, {}
        if kind == "order":
            return 200, order, {}
        if order["status"] != "WORKING":
            return 400, {"message": "order is not cancelable"}, {}
        if kind == "cancel":
            order["status"] = "CANCELED"
            fake.streamer.publish(order["orderId"], "OrderUROutCompleted")
            return 200, None, {}
        spec = json.loads(raw or b"{}")
        why = fake._refusal(spec)
        if why:
            return 400, {"message": why}, {}
        order["status"] = "REPLACED"
        fake.streamer.publish(order["orderId"], "ChangeAccepted")
        new = fake._new_order(spec)
        return 201, None, {"Location": "https://api.schwabapi.com" + base + str(new["orderId"])}

    def _token(self, raw: bytes) -> None:
        fake = self.owner
        form = parse_qs(raw.decode())
        with fake._lock:
            fake.requests["token"] += 1
            fault = fake._fault("token")
            if fault == "500":
                return self._send(500, {"error": "server_error"})
            if (fake.login_revoked or form.get("grant_type") != ["refresh_token"]
                    or form.get("refresh_token") != [fake.refresh_token]):
                return self._send(400, {"error": "invalid_grant", "error_description": "refresh token invalid"})
            access = "access-" + secrets.token_hex(8)
            fake._access[access] = time.time() + fake.access_ttl_s
        self._send(200, {"access_token": access, "refresh_token": fake.refresh_token, "token_type": "Bearer",
                         "expires_in": fake.access_ttl_s, "scope": "api", "id_token": "id"})

    def _send(self, status: int, body: Any, headers: dict | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)


def _kind(method: str, path: str) -> str:
    if path == "/trader/v1/userPreference" and method == "GET":
        return "prefs"
    if _ORDERS.match(path):
        return "place" if method == "POST" else "orders"
    if _ORDER.match(path):
        return {"GET": "order", "DELETE": "cancel", "PUT": "replace"}.get(method, "other")
    if _ACCOUNT.match(path):
        return "account"
    return "other"


def _parse(text: str) -> dt.datetime | None:
    if not text:
        return None
    text = text.replace("Z", "+00:00")
    if text.endswith("+0000"):
        text = text[:-5] + "+00:00"
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        return None
