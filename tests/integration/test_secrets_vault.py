"""Secrets from HashiCorp Vault (KV version 2) through the real hvac, against a fake of Vault's HTTP
API on 127.0.0.1 (tests/fakes/vault.py): token and AppRole, precedence, and each failure as one line."""

from __future__ import annotations

import pytest

from node.config import load_config
from node.errors import ConfigError
from node.secrets import resolve
from tests.fakes.vault import FakeVault

SECRET = {"redis_url": "redis://:pw@redis:6379/0", "database_url": "postgresql://nae:pw@db/nae",
          "signing_keys": "optimus:vault-secret", "admin_token": "vault-admin"}


@pytest.fixture
def vault():
    with FakeVault() as fake:
        fake.put("nae/prod", SECRET)
        yield fake


def _env(vault, tmp_path, **extra) -> dict[str, str]:
    token = tmp_path / "token"
    token.write_text(vault.token + "\n")
    return {"NAE_VAULT_ADDR": vault.addr, "NAE_VAULT_TOKEN_FILE": str(token), "NAE_VAULT_PATH": "nae/prod", **extra}


def test_the_config_comes_from_vault(vault, tmp_path):
    cfg = load_config(None, _env(vault, tmp_path))
    assert cfg.storage.redis_url == SECRET["redis_url"]
    assert cfg.storage.database_url == SECRET["database_url"]
    assert cfg.signing.keys == {"optimus": "vault-secret"}
    assert cfg.api.admin_token == "vault-admin"
    assert ("GET", "/v1/secret/data/nae/prod") in vault.requests


def test_approle_login_then_read(vault, tmp_path):
    vault.approles["role-1"] = "sid-1"
    sid = tmp_path / "sid"
    sid.write_text("sid-1")
    out = resolve({"NAE_VAULT_ADDR": vault.addr, "NAE_VAULT_ROLE_ID": "role-1",
                   "NAE_VAULT_SECRET_ID_FILE": str(sid), "NAE_VAULT_PATH": "nae/prod"})
    assert out["NAE_ADMIN_TOKEN"] == "vault-admin"
    assert vault.requests[0] == ("POST", "/v1/auth/approle/login")


def test_the_environment_wins_over_vault_and_vault_is_not_asked_when_nothing_is_missing(vault, tmp_path):
    env = _env(vault, tmp_path, REDIS_URL="redis://local:6379/0")
    assert resolve(env)["REDIS_URL"] == "redis://local:6379/0"
    full = _env(vault, tmp_path, REDIS_URL="r", DATABASE_URL="d", NAE_SIGNING_KEYS="a:b", NAE_ADMIN_TOKEN="t")
    vault.requests.clear()
    resolve(full)
    assert vault.requests == []


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("bad token", "permission denied"),
        ("no secret", "no such secret"),
        ("sealed", "sealed"),
        ("garbage", "has no data"),
        ("down", "unreachable"),
        ("bad approle", "refused"),
        ("no credentials", "no Vault credentials"),
        ("not a string", "must be a non-empty string"),
    ],
)
def test_each_vault_failure_is_one_line_without_the_secret(vault, tmp_path, breakage, message):
    env = _env(vault, tmp_path)
    if breakage == "bad token":
        (tmp_path / "token").write_text("hvs.wrong")
    elif breakage == "no secret":
        env["NAE_VAULT_PATH"] = "nae/missing"
    elif breakage == "sealed":
        vault.sealed = True
    elif breakage == "garbage":
        vault.garbage = True
    elif breakage == "down":
        env["NAE_VAULT_ADDR"] = "http://127.0.0.1:9"  # discard port: nothing listens
    elif breakage == "bad approle":
        sid = tmp_path / "sid"
        sid.write_text("wrong")
        env = {"NAE_VAULT_ADDR": vault.addr, "NAE_VAULT_ROLE_ID": "r", "NAE_VAULT_SECRET_ID_FILE": str(sid)}
    elif breakage == "no credentials":
        env = {"NAE_VAULT_ADDR": vault.addr}
    elif breakage == "not a string":
        vault.put("nae/prod", {**SECRET, "admin_token": 42})
    with pytest.raises(ConfigError) as err:
        load_config(None, env)
    text = str(err.value)
    assert message in text and "\n" not in text
    assert vault.token not in text and "vault-secret" not in text
