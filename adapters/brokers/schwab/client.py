"""Schwab I/O: schwab-py's documented Trader API client, its OAuth tokens, and the account's budget.

Used from one thread only (the venue's worker, `venue.py`): every call here blocks on HTTP.

- The session is schwab-py's `Client` over authlib's `OAuth2Client` (what
  `schwab.auth.client_from_access_functions` builds), with the token read from and written back to
  PostgreSQL `oauth_tokens` through `node.token_vault` (sealed, never on disk in the clear). authlib
  refreshes the access token `refresh_before_expiry_s` before it expires, on the next request; a
  401 (the server forgot it first) forces one refresh and one retry.
- The refresh token lives 7 days from its login (`creation_timestamp` in schwab-py's token
  wrapper); `login_expires_in_s` says how long is left, and once it lapses (or the token endpoint
  answers `invalid_grant`) every order request is refused with LOGIN_EXPIRED, before it is sent.
- `base_url` other than Schwab's rebases every request (schwab-py hard-codes the host) through an
  httpx transport: how the tests reach the fake, and how an operator would reach a proxy.
- Order requests spend the account's budget in Redis (`adapters/brokers/budget.py`) first.

Outcomes are typed (`Sent`): a request that never left (no connection, no budget, no login) is
`NOT_SENT` with a reason; one whose answer was lost (timeout, connection dropped, 5xx) is
`AMBIGUOUS`; an answer is `ANSWERED` with its status and body.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from enum import StrEnum
from typing import Any, Callable

import asyncpg
import httpx
import msgspec
from authlib.integrations.httpx_client import OAuth2Client
from schwab.auth import TokenMetadata
from schwab.client import Client

from adapters.brokers.budget import DAY_SPENT, GRANTED, RequestBudget
from adapters.brokers.schwab.config import SchwabConfig
from node.reasons import Reason
from node.token_vault import TokenVault, load_token, store_token

log = logging.getLogger("nae.broker.schwab")

BROKER = "schwab"
SCHWAB_URL = "https://api.schwabapi.com"
TOKEN_PATH = "/v1/oauth/token"


class Outcome(StrEnum):
    ANSWERED = "ANSWERED"
    NOT_SENT = "NOT_SENT"
    AMBIGUOUS = "AMBIGUOUS"


class Sent(msgspec.Struct, frozen=True, kw_only=True):
    outcome: Outcome
    status: int = 0
    reason: str = ""  # NOT_SENT / AMBIGUOUS: why
    location: str = ""
    body: Any = None


class TokenStore:
    """The account's token row in `oauth_tokens`, sealed by the vault; sync calls on a private loop."""

    def __init__(self, cfg: SchwabConfig) -> None:
        self._cfg = cfg
        self._vault = TokenVault(cfg.vault_keys(), cfg.vault_key_id)
        self._loop = asyncio.new_event_loop()

    def read(self) -> dict:
        got = self._loop.run_until_complete(self._read())
        if got is None:
            raise LookupError("no Schwab token stored for account " + self._cfg.account_hash)
        return json.loads(got[0])

    def write(self, wrapped: dict, *args: Any, **kwargs: Any) -> None:
        lapses = dt.datetime.fromtimestamp(
            wrapped["creation_timestamp"] + self._cfg.refresh_token_lifetime_s, dt.timezone.utc
        )
        self._loop.run_until_complete(self._write(json.dumps(wrapped).encode(), lapses))

    def close(self) -> None:
        self._loop.close()

    async def _read(self) -> tuple[bytes, dt.datetime] | None:
        conn = await asyncpg.connect(self._cfg.database_url)
        try:
            return await load_token(conn, self._vault, BROKER, self._cfg.account_hash)
        finally:
            await conn.close()

    async def _write(self, token: bytes, lapses: dt.datetime) -> None:
        conn = await asyncpg.connect(self._cfg.database_url)
        try:
            await store_token(conn, self._vault, BROKER, self._cfg.account_hash, token, lapses)
        finally:
            await conn.close()


class _Rebase(httpx.BaseTransport):
    """Sends every request to `base` instead of the host schwab-py names."""

    def __init__(self, base: str) -> None:
        self._base = httpx.URL(base)
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        b = self._base
        request.url = request.url.copy_with(scheme=b.scheme, host=b.host, port=b.port)
        request.headers["host"] = b.netloc.decode()
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


class SchwabClient:
    def __init__(
        self, cfg: SchwabConfig, tokens: TokenStore, budget: RequestBudget, clock_s: Callable[[], float] = time.time
    ) -> None:
        self._cfg = cfg
        self._tokens = tokens
        self._budget = budget
        self._clock_s = clock_s
        self._client: Client | None = None
        self._metadata: TokenMetadata | None = None
        self.login_lapsed = False
        self.refreshes = 0
        self.unauthorized = 0
        self.throttled = 0

    # ---------------------------------------------------------------- session

    def connect(self) -> None:
        wrapped = self._tokens.read()
        meta = TokenMetadata.from_loaded_token(wrapped, self._tokens.write)
        write = meta.wrapped_token_write_func()

        def on_update(token: dict, *args: Any, **kwargs: Any) -> None:
            self.refreshes += 1
            write(token, *args, **kwargs)

        kwargs: dict[str, Any] = {}
        if self._cfg.base_url.rstrip("/") != SCHWAB_URL:
            kwargs["transport"] = _Rebase(self._cfg.base_url)
        timeout = self._cfg.request_timeout_ms / 1000
        session = OAuth2Client(
            self._cfg.api_key, client_secret=self._cfg.app_secret, token=meta.token,
            token_endpoint=SCHWAB_URL + TOKEN_PATH, update_token=on_update,
            leeway=self._cfg.refresh_before_expiry_s, timeout=timeout, **kwargs,
        )  # fmt: skip
        client = Client(self._cfg.api_key, session, token_metadata=meta)
        client.set_timeout(httpx.Timeout(timeout))
        self._client, self._metadata = client, meta

    def close(self) -> None:
        if self._client is not None:
            self._client.session.close()
        self._tokens.close()

    def login_expires_in_s(self) -> float | None:
        meta = self._metadata
        if meta is None:
            return None
        return meta.creation_timestamp + self._cfg.refresh_token_lifetime_s - self._clock_s()

    def login_expires_at_s(self) -> float | None:
        """When the login lapses (seconds since the epoch); now once Schwab refused it early."""
        meta = self._metadata
        if meta is None:
            return None
        at = meta.creation_timestamp + self._cfg.refresh_token_lifetime_s
        return min(at, self._clock_s()) if self.login_lapsed else at

    def logged_in(self) -> bool:
        left = self.login_expires_in_s()
        if left is not None and left <= 0.0:
            self.login_lapsed = True
        return self._client is not None and not self.login_lapsed

    # ---------------------------------------------------------------- requests

    def place(self, spec: dict) -> Sent:
        return self._order_request(lambda c: c.place_order(self._cfg.account_hash, spec))

    def replace(self, order_id: str, spec: dict) -> Sent:
        return self._order_request(lambda c: c.replace_order(self._cfg.account_hash, int(order_id), spec))

    def cancel(self, order_id: str) -> Sent:
        return self._order_request(lambda c: c.cancel_order(int(order_id), self._cfg.account_hash))

    def orders(self, since: dt.datetime) -> Sent:
        now = dt.datetime.fromtimestamp(self._clock_s() + 60, dt.timezone.utc)
        return self._request(lambda c: c.get_orders_for_account(
            self._cfg.account_hash, from_entered_datetime=since, to_entered_datetime=now))

    def account(self) -> Sent:
        return self._request(lambda c: c.get_account(self._cfg.account_hash, fields=[Client.Account.Fields.POSITIONS]))

    def preferences(self) -> tuple[Sent, str]:
        """`GET /trader/v1/userPreference` (the streamer's URL and ids) and the access token now
        (what the streamer's LOGIN carries); after the request, so a refresh it caused is in."""
        sent = self._request(lambda c: c.get_user_preferences())
        client = self._client
        token = "" if client is None else str(client.session.token.get("access_token", ""))
        return sent, token

    def _order_request(self, call: Callable[[Client], httpx.Response]) -> Sent:
        if not self.logged_in():
            return Sent(outcome=Outcome.NOT_SENT, reason=Reason.LOGIN_EXPIRED.value)
        deadline = time.monotonic() + self._cfg.budget_wait_ms / 1000
        while True:
            verdict = self._budget.take()
            if verdict == GRANTED:
                break
            if verdict == DAY_SPENT or time.monotonic() + verdict / 1000 > deadline:
                return Sent(outcome=Outcome.NOT_SENT, reason=Reason.BROKER_RATE_LIMITED.value)
            time.sleep(verdict / 1000)
        sent = self._request(call)
        if sent.status == 429:  # Schwab's own limiter refused it: not placed
            self.throttled += 1
            return Sent(outcome=Outcome.NOT_SENT, reason=Reason.BROKER_RATE_LIMITED.value, status=429)
        return sent

    def _request(self, call: Callable[[Client], httpx.Response], retried: bool = False) -> Sent:
        client = self._client
        if client is None or self.login_lapsed:
            return Sent(outcome=Outcome.NOT_SENT, reason=Reason.LOGIN_EXPIRED.value)
        try:
            resp = call(client)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout):
            return Sent(outcome=Outcome.NOT_SENT, reason=Reason.NO_CONNECTION.value)
        except httpx.TransportError:  # read timeout, connection dropped mid-answer
            return Sent(outcome=Outcome.AMBIGUOUS, reason=Reason.TIMEOUT.value)
        except Exception as exc:  # noqa: BLE001 - authlib's refresh failed: the login is gone
            if _is_login_error(exc):
                self.login_lapsed = True
                log.error("schwab: the refresh token was refused (%s): new orders are refused until a new login",
                          type(exc).__name__)
                return Sent(outcome=Outcome.NOT_SENT, reason=Reason.LOGIN_EXPIRED.value)
            raise
        status = resp.status_code
        if status == 401 and not retried:
            self.unauthorized += 1
            if not self._force_refresh():
                return Sent(outcome=Outcome.NOT_SENT, reason=Reason.LOGIN_EXPIRED.value, status=401)
            return self._request(call, retried=True)
        if status == 401:
            return Sent(outcome=Outcome.NOT_SENT, reason=Reason.LOGIN_EXPIRED.value, status=401)
        if status >= 500:
            return Sent(outcome=Outcome.AMBIGUOUS, reason=Reason.VENUE_UNAVAILABLE.value, status=status)
        body = None
        if resp.content:
            try:
                body = resp.json()
            except ValueError:
                body = None
        return Sent(outcome=Outcome.ANSWERED, status=status, location=resp.headers.get("Location", ""), body=body)

    def _force_refresh(self) -> bool:
        session = self._client.session
        try:
            session.refresh_token(SCHWAB_URL + TOKEN_PATH, refresh_token=session.token.get("refresh_token"))
            return True
        except httpx.TransportError:
            return False
        except Exception as exc:  # noqa: BLE001 - authlib: invalid_grant and the like
            if _is_login_error(exc):
                self.login_lapsed = True
                return False
            raise


def _is_login_error(exc: Exception) -> bool:
    """authlib's OAuthError / InvalidTokenError / MissingTokenError (refresh refused, no token)."""
    return type(exc).__module__.startswith("authlib")
