"""Broker OAuth tokens, encrypted at rest in the `oauth_tokens` table (AES-256-GCM).

The database only ever sees the nonce and the ciphertext. The associated data binds a ciphertext
to its row (`broker`, `account`) and key id, so a ciphertext copied to another row does not open.
Keys are named by key id so they can rotate: seal with the current key, open with whichever key
id the row names. Where the key bytes come from (a secret store, an env var read by the CLI) is the
caller's business; nothing here reads the environment.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Mapping

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from node.errors import ConfigError, StoreError

NONCE_BYTES = 12


class TokenVault:
    """Seals and opens token bytes with AES-256-GCM; `keys` maps key id -> 32-byte key."""

    def __init__(self, keys: Mapping[str, bytes], current_key_id: str) -> None:
        if current_key_id not in keys:
            raise ConfigError("token vault: current key id " + repr(current_key_id) + " has no key")
        for key_id, key in keys.items():
            if len(key) != 32:
                raise ConfigError("token vault: key " + repr(key_id) + " must be 32 bytes (AES-256)")
        self._aead = {key_id: AESGCM(bytes(key)) for key_id, key in keys.items()}
        self.current_key_id = current_key_id

    @staticmethod
    def new_key() -> bytes:
        return AESGCM.generate_key(bit_length=256)

    def seal(self, plaintext: bytes, broker: str, account: str) -> tuple[str, bytes, bytes]:
        """-> (key_id, nonce, ciphertext) for the row (broker, account)."""
        nonce = os.urandom(NONCE_BYTES)
        key_id = self.current_key_id
        ct = self._aead[key_id].encrypt(nonce, plaintext, _aad(broker, account, key_id))
        return key_id, nonce, ct

    def open(self, key_id: str, nonce: bytes, ciphertext: bytes, broker: str, account: str) -> bytes:
        """The plaintext; raises `StoreError` when the key is unknown or the data was tampered with
        (or belongs to another row)."""
        aead = self._aead.get(key_id)
        if aead is None:
            raise StoreError("token vault: no key for key id " + repr(key_id))
        try:
            return aead.decrypt(nonce, ciphertext, _aad(broker, account, key_id))
        except InvalidTag:
            raise StoreError("token vault: token for " + broker + "/" + account + " does not authenticate") from None


def _aad(broker: str, account: str, key_id: str) -> bytes:
    return b"nae-oauth\x00" + broker.encode() + b"\x00" + account.encode() + b"\x00" + key_id.encode()


async def store_token(
    conn: asyncpg.Connection, vault: TokenVault, broker: str, account: str, token: bytes, expires_at: dt.datetime
) -> None:
    """Seal `token` and upsert it as the row (broker, account)."""
    key_id, nonce, ct = vault.seal(token, broker, account)
    await conn.execute(
        "INSERT INTO oauth_tokens (broker, account, key_id, nonce, ciphertext, expires_at) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (broker, account) DO UPDATE SET "
        "key_id = EXCLUDED.key_id, nonce = EXCLUDED.nonce, ciphertext = EXCLUDED.ciphertext, "
        "expires_at = EXCLUDED.expires_at, updated_at = now()",
        broker, account, key_id, nonce, ct, expires_at,
    )  # fmt: skip


async def load_token(
    conn: asyncpg.Connection, vault: TokenVault, broker: str, account: str
) -> tuple[bytes, dt.datetime] | None:
    """(token, expires_at) of the row (broker, account), or None when there is none."""
    row = await conn.fetchrow(
        "SELECT key_id, nonce, ciphertext, expires_at FROM oauth_tokens WHERE broker = $1 AND account = $2",
        broker, account,
    )  # fmt: skip
    if row is None:
        return None
    return vault.open(row["key_id"], row["nonce"], row["ciphertext"], broker, account), row["expires_at"]
