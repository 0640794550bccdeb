"""Both broker fakes at once (Schwab's HTTP API and TWS's socket API), quoting the same prices; and
the Schwab adapter's account at its fake (its token database, config and seeded login)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from node.config import SchwabConfig
from node.migrations import apply_migrations, create_database, drop_database
from tests.fakes.schwab_fake import SchwabFake
from tests.fakes.tws_fake import TwsFake


@contextmanager
def broker_fakes(prices: dict[str, float]) -> Iterator[tuple[SchwabFake, TwsFake]]:
    schwab = SchwabFake(account_hash="H" + secrets.token_hex(4)).start()
    schwab.prices = dict(prices)
    tws = TwsFake(prices=dict(prices)).start()
    try:
        yield schwab, tws
    finally:
        schwab.stop()
        tws.stop()


@contextmanager
def schwab_account(fake: SchwabFake, database_url: str, prefix: str, **fields) -> Iterator[tuple[str, SchwabConfig]]:
    """A migrated database of its own (`prefix` + a random tail), the Schwab adapter's config for
    `fake` (and `fields`) with its tokens kept there, and a login seeded; yields (the database's
    URL, the config); drops the database after."""
    from tests.integration.test_schwab_venue import seed_token

    name, url = asyncio.run(create_database(database_url, prefix))
    asyncio.run(apply_migrations(url))
    sc = SchwabConfig(
        api_key=fake.api_key, app_secret=fake.app_secret, account_hash=fake.account_hash, base_url=fake.base_url,
        database_url=url, vault_keys_hex={"k1": secrets.token_hex(32)}, vault_key_id="k1", **fields,
    )  # fmt: skip
    seed_token(sc, fake.issue_token())
    try:
        yield url, sc
    finally:
        asyncio.run(drop_database(database_url, name))
