"""Secrets from files or from HashiCorp Vault, resolved into the environment overrides `load_config` reads.

A deployment keeps no secret in its compose file, its unit file or its process list:

- **Files** (Docker / Kubernetes secrets): `<NAME>_FILE=/run/secrets/x` for each of `SECRET_VARS`; the
  file's content (one trailing newline stripped) is the value. Setting both `NAME` and `NAME_FILE` is
  refused: which one wins would be a guess.
- **Vault** (KV version 2, through `hvac`): `NAE_VAULT_ADDR`, a token (`NAE_VAULT_TOKEN` or
  `NAE_VAULT_TOKEN_FILE`) or an AppRole (`NAE_VAULT_ROLE_ID` + `NAE_VAULT_SECRET_ID_FILE`), the engine's
  mount (`NAE_VAULT_MOUNT`, default `secret`) and the secret's path (`NAE_VAULT_PATH`, default `nae`).
  The secret's keys are the lower-case names in `VAULT_KEYS` (`redis_url`, `database_url`,
  `signing_keys`, `admin_token`); a value set in the environment or a file wins over Vault's.

Every failure is a `ConfigError` of one line that names the variable, the file or the Vault path,
never the secret. Nothing here runs at import time; the CLI calls `resolve(os.environ)` once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from node.errors import ConfigError

#: the environment variables that may carry a secret (each may come from `<NAME>_FILE` or Vault)
SECRET_VARS = ("REDIS_URL", "DATABASE_URL", "NAE_SIGNING_KEYS", "NAE_ADMIN_TOKEN")
#: environment variable -> key in the Vault secret
VAULT_KEYS = {
    "REDIS_URL": "redis_url",
    "DATABASE_URL": "database_url",
    "NAE_SIGNING_KEYS": "signing_keys",
    "NAE_ADMIN_TOKEN": "admin_token",
}
MAX_SECRET_BYTES = 64 * 1024
VAULT_TIMEOUT_S = 5.0

#: (addr, auth, mount, path, timeout_s) -> the secret's key/value data; replaced in tests by nothing:
#: they run the real hvac against a fake Vault HTTP server (tests/fakes/vault.py)
VaultReader = Callable[[str, "VaultAuth", str, str, float], Mapping[str, Any]]


class VaultAuth:
    """A token, or an AppRole (role id + secret id) exchanged for a token at login."""

    def __init__(self, token: str = "", role_id: str = "", secret_id: str = "") -> None:
        self.token = token
        self.role_id = role_id
        self.secret_id = secret_id

    def __repr__(self) -> str:  # never a secret in a log line or a traceback
        return "VaultAuth(token=%s, approle=%s)" % ("set" if self.token else "unset", bool(self.role_id))


def read_secret_file(path: str, variable: str) -> str:
    """The secret in `path`, without its trailing newline. Raises `ConfigError` naming `variable`."""
    try:
        raw = Path(path).read_bytes()[: MAX_SECRET_BYTES + 1]
    except FileNotFoundError:
        raise ConfigError(variable + ": no such file " + repr(path)) from None
    except IsADirectoryError:
        raise ConfigError(variable + ": " + repr(path) + " is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError(variable + ": cannot read " + repr(path) + " (" + (exc.strerror or "error") + ")") from None
    if len(raw) > MAX_SECRET_BYTES:
        raise ConfigError(variable + ": " + repr(path) + " is larger than " + str(MAX_SECRET_BYTES) + " bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(variable + ": " + repr(path) + " is not UTF-8 text") from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text.strip():
        raise ConfigError(variable + ": " + repr(path) + " is empty")
    if "\n" in text or "\r" in text or "\x00" in text:
        raise ConfigError(variable + ": " + repr(path) + " holds more than one line")
    return text


def resolve(env: Mapping[str, str], vault_reader: VaultReader | None = None) -> dict[str, str]:
    """A copy of `env` with every secret variable filled from its `_FILE` or from Vault."""
    out = dict(env)
    for name in SECRET_VARS:
        file_var = name + "_FILE"
        if env.get(file_var):
            if env.get(name):
                raise ConfigError(name + " and " + file_var + " are both set: set one of them")
            out[name] = read_secret_file(env[file_var], file_var)
    addr = env.get("NAE_VAULT_ADDR", "")
    if addr:
        missing = [name for name in SECRET_VARS if not out.get(name)]
        if missing:
            data = (vault_reader or read_vault)(addr, _vault_auth(env), env.get("NAE_VAULT_MOUNT") or "secret",
                                                env.get("NAE_VAULT_PATH") or "nae", VAULT_TIMEOUT_S)
            for name in missing:
                value = data.get(VAULT_KEYS[name])
                if value is None:
                    continue
                if not isinstance(value, str) or not value.strip():
                    raise ConfigError("vault: key " + repr(VAULT_KEYS[name]) + " must be a non-empty string")
                out[name] = value
    return out


def _vault_auth(env: Mapping[str, str]) -> VaultAuth:
    token = env.get("NAE_VAULT_TOKEN", "")
    if env.get("NAE_VAULT_TOKEN_FILE"):
        if token:
            raise ConfigError("NAE_VAULT_TOKEN and NAE_VAULT_TOKEN_FILE are both set: set one of them")
        token = read_secret_file(env["NAE_VAULT_TOKEN_FILE"], "NAE_VAULT_TOKEN_FILE")
    role_id = env.get("NAE_VAULT_ROLE_ID", "")
    secret_id = ""
    if env.get("NAE_VAULT_SECRET_ID_FILE"):
        secret_id = read_secret_file(env["NAE_VAULT_SECRET_ID_FILE"], "NAE_VAULT_SECRET_ID_FILE")
    if not token and not (role_id and secret_id):
        raise ConfigError("NAE_VAULT_ADDR is set but no Vault credentials: set NAE_VAULT_TOKEN_FILE "
                          "(or NAE_VAULT_TOKEN), or NAE_VAULT_ROLE_ID and NAE_VAULT_SECRET_ID_FILE")
    return VaultAuth(token=token, role_id=role_id, secret_id=secret_id)


def read_vault(addr: str, auth: VaultAuth, mount: str, path: str, timeout_s: float = VAULT_TIMEOUT_S) -> dict[str, Any]:
    """The newest version of a KV v2 secret, through hvac. Raises `ConfigError` (one line, no secret)."""
    import hvac
    import hvac.exceptions
    import requests

    where = "vault " + addr + " " + mount + "/" + path
    try:
        client = hvac.Client(url=addr, token=auth.token or None, timeout=timeout_s)
        if not auth.token:
            client.auth.approle.login(role_id=auth.role_id, secret_id=auth.secret_id)
        answer = client.secrets.kv.v2.read_secret_version(path=path, mount_point=mount,
                                                          raise_on_deleted_version=True)
    except hvac.exceptions.Forbidden:
        raise ConfigError(where + ": permission denied (check the token or the policy)") from None
    except hvac.exceptions.Unauthorized:
        raise ConfigError(where + ": the credentials were refused") from None
    except hvac.exceptions.InvalidPath:
        raise ConfigError(where + ": no such secret (KV version 2 expected)") from None
    except hvac.exceptions.VaultDown:
        raise ConfigError(where + ": Vault is sealed or in maintenance") from None
    except hvac.exceptions.VaultError as exc:
        raise ConfigError(where + ": Vault refused the read (" + type(exc).__name__ + ")") from None
    except requests.exceptions.RequestException as exc:
        raise ConfigError(where + ": unreachable (" + type(exc).__name__ + ")") from None
    except ValueError:  # a body that is not JSON
        raise ConfigError(where + ": the answer is not Vault's JSON") from None
    outer = answer.get("data") if isinstance(answer, Mapping) else None
    data = outer.get("data") if isinstance(outer, Mapping) else None
    if not isinstance(data, Mapping):
        raise ConfigError(where + ": the answer has no data (KV version 2 expected)")
    return dict(data)
