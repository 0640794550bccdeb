"""The validator's lifecycle lines that are pure bookkeeping: store outage / recovery, breaker changes
(the methods run on a stand-in object: no sockets, no Redis)."""

import logging
from types import SimpleNamespace

from actors.validator import Validator, _log_breaker_changes


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def capture(name):
    handler = Lines()
    logging.getLogger(name).addHandler(handler)
    logging.getLogger(name).setLevel(logging.INFO)
    return handler


def test_store_outage_then_recovered_once_each():
    lines = capture("nae.validator")
    v = SimpleNamespace(name="validator", store_failures=0)
    for failures in (0, 0, 3, 5, 5, 5, 6, 6):
        v.store_failures = failures
        Validator._log_store_health(v)
    assert lines.lines == ["store_outage store_failures=3", "store_recovered store_failures=5",
                           "store_outage store_failures=6", "store_recovered store_failures=6"]


def test_breaker_lines_only_on_a_change():
    lines = capture("nae.test-breakers")
    log = logging.getLogger("nae.test-breakers")
    closed = {"state": "CLOSED", "failures": 0}
    _log_breaker_changes(log, {}, {"system": closed})  # first save, closed: nothing happened
    _log_breaker_changes(log, {"system": closed}, {"system": {"state": "OPEN", "failures": 5}})
    _log_breaker_changes(log, {"system": {"state": "OPEN"}}, {"system": {"state": "OPEN", "failures": 6}})
    _log_breaker_changes(log, {"system": {"state": "OPEN"}}, {"system": closed})
    assert lines.lines == ["breaker name=system state=OPEN failures=5", "breaker name=system state=CLOSED failures=0"]
