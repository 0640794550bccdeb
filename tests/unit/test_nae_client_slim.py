"""The slim client package (client/, distribution nae-client): it imports with Ray, NautilusTrader,
numba and the node's own packages unavailable; it depends on none of them; and it is the one
definition of the client's wire, signing, client and fallback: the node's names are the same objects."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "client"))

import nae_client.wire as cw  # noqa: E402
from nae_client import prepare as client_prepare  # noqa: E402
from nae_client.replay import _split, report_key, since_ms  # noqa: E402
from nae_client.signing import http_headers  # noqa: E402
from nae_client.signing import make_envelope as client_envelope  # noqa: E402
from nae_client import client as cc, fallback as cf, signing as cs  # noqa: E402
from node import client as nc, fallback as nf, messages as nm, signing as ns  # noqa: E402

HEAVY = ("ray", "nautilus_trader", "numba", "numpy", "node", "actors", "adapters", "asyncpg", "fastapi")

_BLOCKER = """
import importlib.abc, sys
HEAVY = set(%r)
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in HEAVY:
            raise ImportError('blocked for this test: ' + name)
sys.meta_path.insert(0, Block())
sys.path.insert(0, %r)
import nae_client
from nae_client import ExecutionClient, AsyncExecutionClient, ReportLog, send_execution_signal
loaded = sorted(m for m in sys.modules if m.split('.')[0] in HEAVY)
print('LOADED', loaded)
"""


def test_the_client_imports_without_ray_nautilus_numba_or_the_node():
    code = _BLOCKER % (HEAVY, str(ROOT / "client"))
    proc = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "LOADED []" in proc.stdout


def test_the_blocker_does_block():
    """The check above can fail: importing the node's client under the same blocker fails."""
    code = _BLOCKER.replace("import nae_client\n", "import node.client\n") % (HEAVY, str(ROOT / "client"))
    proc = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "blocked for this test" in proc.stderr


def test_the_distribution_depends_on_nothing_heavy():
    project = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())["project"]
    names = {msgspec.json.decode(b'"' + d.split(">")[0].split("=")[0].split("[")[0].strip().encode() + b'"').lower()
             for d in project["dependencies"]}
    assert names <= {"pyzmq", "msgspec", "redis"}, names


@pytest.mark.parametrize("module, client_module, name", [
    *((nm, cw, n) for n in ("SignedSignal", "Discover", "Reply", "Endpoints", "ExecutionReport", "Status", "Side",
                            "ExecKind", "IntakeRequest", "IntakeResponse", "event_topic", "topic_prefixes")),
    *((ns, cs, n) for n in ("sign", "signing_bytes", "make_envelope")),
    *((nc, cc, n) for n in ("ExecutionClient", "AsyncExecutionClient", "prepare", "send_execution_signal")),
    *((nf, cf, n) for n in ("FallbackChannel", "FRAME_FIELD", "REPLY_FIELD", "MAX_AGE_FIELD", "DEFAULT_MAX_AGE_MS")),
])
def test_the_nodes_wire_is_the_clients(module, client_module, name):
    assert getattr(module, name) is getattr(client_module, name)


@given(key=st.text(min_size=1, max_size=20), secret=st.binary(min_size=1, max_size=64),
       payload=st.binary(max_size=200), ts=st.integers(min_value=0, max_value=2**63))
def test_the_http_signature_is_the_envelopes(key, secret, payload, ts):
    assert http_headers(key, secret, payload, ts)["X-Signature"] == client_envelope(key, secret, payload, ts).sig.hex()


def test_a_signal_dict_is_stamped_once():
    signal = {"request_id": "r1", "timestamp": 1.5, "strategy_id": "s", "symbol": "AAPL", "action": "BUY",
              "quantity": 3}
    assert client_prepare(signal) == ("r1", msgspec.msgpack.encode(signal))
    fresh = {"strategy_id": "s"}
    rid, payload = client_prepare(fresh)
    assert rid and msgspec.msgpack.decode(payload)["request_id"] == rid
    assert client_prepare(fresh) == (rid, payload), "the same dict again is the same signal (a retry)"


def test_a_typed_signal_is_sent_as_it_is():
    signal = nm.Signal(request_id="r2", strategy_id="s", timestamp=2.5, symbol="AAPL", action=nm.Action.BUY,
                       quantity=1.0)
    assert client_prepare(signal) == ("r2", nm.encode(signal))


def test_report_payloads_decode_both_ways():
    report = nm.ExecutionReport(kind=nm.ExecKind.FILL, client_order_id="NAE-x-0", exec_id="e1", last_qty=2.0)
    assert msgspec.structs.asdict(cw.report_decoder.decode(nm.encode(report))) == msgspec.structs.asdict(report)


@given(ms=st.integers(min_value=0, max_value=2**48))
def test_since_ms_is_a_sequence_before_that_time(ms):
    entry, index = _split(since_ms(ms))
    assert entry == str(ms) + "-0" and index == -1


def test_a_bad_sequence_is_a_value_error():
    with pytest.raises(ValueError):
        _split("yesterday")


def test_report_key_tells_fills_by_exec_id_and_others_by_state():
    fill = cw.ExecutionReport(kind=cw.ExecKind.FILL, client_order_id="o", exec_id="e", cum_qty=1.0)
    assert report_key(fill) == report_key(msgspec.structs.replace(fill, ts_ns=5))
    new = cw.ExecutionReport(kind=cw.ExecKind.NEW, client_order_id="o")
    assert report_key(new) != report_key(msgspec.structs.replace(new, kind=cw.ExecKind.CANCELED))
