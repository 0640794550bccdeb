"""Secrets from `<NAME>_FILE`: read, trimmed, refused with one line naming the variable, never leaked;
`load_config` takes them like the plain variables."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.config import load_config
from node.errors import ConfigError
from node.secrets import SECRET_VARS, read_secret_file, resolve


def _write(tmp_path, name: str, content: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(content)
    os.chmod(path, 0o600)
    return str(path)


def test_file_secrets_fill_the_config(tmp_path):
    env = {
        "REDIS_URL_FILE": _write(tmp_path, "redis", b"redis://:pw@redis:6379/0\n"),
        "DATABASE_URL_FILE": _write(tmp_path, "db", b"postgresql://nae:pw@postgres:5432/nae\r\n"),
        "NAE_SIGNING_KEYS_FILE": _write(tmp_path, "keys", b"optimus:s3cret,old:s2"),
        "NAE_ADMIN_TOKEN_FILE": _write(tmp_path, "admin", b"tok-123\n"),
        "NAE_ADVERTISE_HOST": "10.1.2.3",
    }
    cfg = load_config(None, env)
    assert cfg.storage.redis_url == "redis://:pw@redis:6379/0"
    assert cfg.storage.database_url == "postgresql://nae:pw@postgres:5432/nae"
    assert cfg.signing.keys == {"optimus": "s3cret", "old": "s2"}
    assert cfg.api.admin_token == "tok-123"
    assert cfg.advertise_host == "10.1.2.3"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"\n", "is empty"),
        (b"two\nlines", "more than one line"),
        (b"\xff\xfe", "not UTF-8"),
        (b"x" * (64 * 1024 + 1), "larger than"),
    ],
)
def test_a_bad_secret_file_is_one_line_naming_the_variable(tmp_path, content, message):
    path = _write(tmp_path, "s", content)
    with pytest.raises(ConfigError) as err:
        resolve({"REDIS_URL_FILE": path})
    assert "REDIS_URL_FILE" in str(err.value) and message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_missing_file_and_a_directory_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        resolve({"DATABASE_URL_FILE": str(tmp_path / "nope")})
    with pytest.raises(ConfigError, match="is a directory"):
        resolve({"DATABASE_URL_FILE": str(tmp_path)})


def test_both_the_variable_and_its_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="both set"):
        resolve({"NAE_ADMIN_TOKEN": "a", "NAE_ADMIN_TOKEN_FILE": _write(tmp_path, "t", b"b")})


def test_a_refusal_never_shows_the_secret(tmp_path):
    path = _write(tmp_path, "keys", b"no-colon-here-SECRETVALUE")
    with pytest.raises(ConfigError) as err:
        load_config(None, {"NAE_SIGNING_KEYS_FILE": path})
    assert "SECRETVALUE" not in str(err.value)


@settings(max_examples=200, deadline=None)
@given(content=st.binary(max_size=300), var=st.sampled_from(SECRET_VARS))
def test_any_file_content_is_a_value_or_a_config_error(tmp_path_factory, content, var):
    path = _write(tmp_path_factory.mktemp("f"), "s", content)
    try:
        out = resolve({var + "_FILE": path})
    except ConfigError as exc:
        assert "\n" not in str(exc)
        return
    value = out[var]
    assert value.strip() and "\n" not in value and value.encode() in content


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=80))
def test_read_secret_file_round_trips_one_line(tmp_path_factory, text):
    path = _write(tmp_path_factory.mktemp("f"), "s", (text + "\n").encode())
    expected = text.removesuffix("\r")  # "\r\n" ends a line too
    if expected.strip() and not any(c in expected for c in "\r\n\x00"):
        assert read_secret_file(path, "X_FILE") == expected
    else:
        with pytest.raises(ConfigError):
            read_secret_file(path, "X_FILE")
