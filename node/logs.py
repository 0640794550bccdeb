"""Logging for every process of the node: stdlib `logging`, text or JSON lines, secrets masked.

- One logger per actor: `logger("validator")` -> `nae.validator`; every process configures the
  `nae` tree once (`configure`), with a handler to stderr (a Ray worker's stderr is its log file
  under the Ray session folder) and, when `[logging] file` is set, one to `<data_dir>/<file>`,
  shared by every process of the node (appends of one line each).
- Never a secret: the handlers' formatter replaces every configured secret (signing keys, the
  admin token, the password of a Redis or PostgreSQL URL) with `***` in the whole formatted line,
  traceback included, and masks the password of any URL it sees.
- Rate limits: `RepeatLimiter` lets one line per key through per interval and counts the rest,
  so an exception repeating at a loop boundary logs once per interval with a count, never a flood.
  Hot paths log nothing (see actors/service.py: only the loop boundary and lifecycle events log).
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterable

import orjson

from node.config import LogFormat, LoggingConfig, NodeConfig

ROOT = "nae"
MASK = "***"
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)@")
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d] %(message)s"
_configured: dict[str, Any] = {}
_lock = threading.Lock()


def logger(actor: str) -> logging.Logger:
    """The logger of one actor (or part): `nae.<actor>`."""
    return logging.getLogger(ROOT + "." + actor)


def secrets_of(cfg: NodeConfig) -> list[str]:
    """Every secret the config holds: signing secrets, the admin token, store URL passwords."""
    out = [s for s in cfg.signing.keys.values() if s]
    if cfg.api.admin_token:
        out.append(cfg.api.admin_token)
    return out + passwords_in(cfg.storage.redis_url, cfg.storage.database_url)


def passwords_in(*urls: str | None) -> list[str]:
    """The passwords of these URLs (`scheme://user:password@host`)."""
    return [m.group("pw") for m in (_URL_PASSWORD.search(u or "") for u in urls) if m]


def mask(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every secret and every URL password replaced by `***`."""
    for secret in secrets:
        if secret and len(secret) >= 4:  # a 1-3 character "secret" would mask half the line
            text = text.replace(secret, MASK)
    return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK + "@", text)


class RedactingFormatter(logging.Formatter):
    """Formats as `inner` does (text or JSON), then masks secrets in the whole line."""

    def __init__(self, inner: logging.Formatter, secrets: Iterable[str]) -> None:
        super().__init__()
        self._inner = inner
        # longest first: a secret that contains another is masked whole
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        return mask(self._inner.format(record), self._secrets)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts (RFC 3339, UTC), level, logger, pid, msg, exc (when any), and
    the record's `event` fields (`extra={"event": {...}}`)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + ".%03dZ" % record.msecs,
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "msg": record.getMessage(),
        }
        event = getattr(record, "event", None)
        if isinstance(event, dict):
            doc.update({k: v for k, v in event.items() if k not in doc})
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def formatter(cfg: LoggingConfig, secrets: Iterable[str]) -> logging.Formatter:
    inner = JsonFormatter() if cfg.format is LogFormat.JSON else logging.Formatter(_TEXT_FORMAT)
    if cfg.format is not LogFormat.JSON:
        inner.converter = time.gmtime
    return RedactingFormatter(inner, secrets)


def configure(cfg: NodeConfig, stream: Any = None) -> logging.Logger:
    """Set up the `nae` logger tree of this process from the config (idempotent: a second call
    with the same config does nothing; another config replaces the handlers)."""
    key = repr((cfg.logging, cfg.data_dir, sorted(secrets_of(cfg))))
    root = logging.getLogger(ROOT)
    with _lock:
        if _configured.get("key") == key and stream is None:
            return root
        for handler in _configured.get("handlers", []):
            root.removeHandler(handler)
            handler.close()
        fmt = formatter(cfg.logging, secrets_of(cfg))
        handlers: list[logging.Handler] = [logging.StreamHandler(stream or sys.stderr)]
        if cfg.logging.file:
            path = Path(cfg.data_dir).resolve() / cfg.logging.file
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                handlers.append(logging.FileHandler(path, encoding="utf-8"))
            except OSError as exc:  # a read-only folder: stderr still works, and says why
                print("execnode: cannot write the log file " + str(path) + ": " + str(exc), file=sys.stderr)
        for handler in handlers:
            handler.setFormatter(fmt)
            root.addHandler(handler)
        root.setLevel(cfg.logging.level.value)
        root.propagate = False
        _configured.update(key=key, handlers=handlers)
    return root


class RepeatLimiter:
    """At most one line per key per `interval_s`; `allow(key)` -> None (suppress) or the number of
    lines suppressed since the last one let through (0 the first time)."""

    def __init__(self, interval_s: float = 10.0, clock: Any = time.monotonic) -> None:
        self._interval_s = interval_s
        self._clock = clock
        self._last: dict[Any, float] = {}
        self._suppressed: dict[Any, int] = {}

    def allow(self, key: Any) -> int | None:
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._suppressed.pop(key, 0)


def lifecycle(log: logging.Logger, event: str, **fields: Any) -> None:
    """A lifecycle event (start, stop, failover, breaker trip, kill switch, store outage, restart):
    one INFO line `event key=value ...`, the fields also as JSON keys."""
    text = event + "".join(" " + k + "=" + str(v) for k, v in fields.items())
    log.info(text, extra={"event": {"event": event, **fields}})


__all__ = ["logger", "configure", "secrets_of", "mask", "RepeatLimiter", "lifecycle", "RedactingFormatter",
           "JsonFormatter", "MASK"]
