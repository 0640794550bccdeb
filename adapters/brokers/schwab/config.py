"""Settings of one Schwab account behind one broker adapter (typed, validated, no environment reads)."""

from __future__ import annotations

from typing import Annotated

import msgspec

PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]

#: Schwab's refresh token lives 7 days from the login that made it
REFRESH_TOKEN_LIFETIME_S = 7 * 24 * 3600


class SchwabConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: the app key and secret of the Schwab developer app (from a secret file, never in the repo)
    api_key: str = ""
    app_secret: str = ""
    #: the account's hash (`GET /trader/v1/accounts/accountNumbers`), what every order path names
    account_hash: str = ""
    #: Schwab's API; a test points it at the fake, an operator may at a proxy
    base_url: str = "https://api.schwabapi.com"
    #: where the OAuth tokens live: PostgreSQL `oauth_tokens` (sealed by `node/token_vault.py`)
    database_url: str = ""
    #: the vault's keys: key id -> 64 hex chars (32 bytes); the current one seals
    vault_keys_hex: dict[str, str] = {}
    vault_key_id: str = ""
    #: where the order budget and the client-order-id map live (shared by every adapter of the account)
    redis_url: str = ""
    #: refresh the access token this long before it expires
    refresh_before_expiry_s: PositiveInt = 300
    #: the refresh token's life from its login, and how long ahead its end is surfaced
    refresh_token_lifetime_s: PositiveInt = REFRESH_TOKEN_LIFETIME_S
    login_warn_before_s: PositiveInt = 24 * 3600
    #: Schwab's per-account limits on order requests (place, replace, cancel)
    order_requests_per_min: PositiveInt = 120
    order_requests_per_day: PositiveInt = 4_000
    #: a request over the minute's budget waits at most this long for the next minute, else is refused
    budget_wait_ms: NonNegativeInt = 0
    #: a request with no answer within this is UNKNOWN (submit) or unconfirmed (cancel, replace)
    request_timeout_ms: PositiveInt = 5_000
    #: how often the order list is swept for status and fills (the backstop of every answer)
    sweep_interval_ms: PositiveInt = 1_000
    #: an UNKNOWN submit no sweep has found after this long was never placed (REJECTED, NOT_AT_BROKER)
    unknown_settle_ms: PositiveInt = 30_000
    #: time in force of the orders it places: DAY, GTC, IOC, FOK
    time_in_force: str = "DAY"

    def vault_keys(self) -> dict[str, bytes]:
        return {k: bytes.fromhex(v) for k, v in self.vault_keys_hex.items()}
