"""The slim client package (client/, distribution nae-client): it imports with Ray, NautilusTrader,
numba and the node's own packages unavailable; it depends on none of them; its wire types, signing and
payloads are byte-for-byte the node's."""

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
from node import messages as nm  # noqa: E402
from node.client import prepare as node_prepare  # noqa: E402
from node.signing import make_envelope as node_envelope  # noqa: E402

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


def _shape(schema):
    """A JSON schema without its prose (docstrings differ; fields, types, defaults and tags may not)."""
    if isinstance(schema, dict):
        return {k: _shape(v) for k, v in schema.items() if k not in ("description", "title")}
    if isinstance(schema, list):
        return [_shape(v) for v in schema]
    return schema


@pytest.mark.parametrize("name", ["SignedSignal", "Discover", "Reply", "Endpoints", "ExecutionReport"])
def test_wire_types_are_the_nodes(name):
    assert _shape(msgspec.json.schema(getattr(cw, name))) == _shape(msgspec.json.schema(getattr(nm, name)))


@given(key=st.text(min_size=1, max_size=20), secret=st.binary(min_size=1, max_size=64),
       payload=st.binary(max_size=200), ts=st.integers(min_value=0, max_value=2**63))
def test_signing_is_the_nodes(key, secret, payload, ts):
    assert cw.encode(client_envelope(key, secret, payload, ts)) == nm.encode(node_envelope(key, secret, payload, ts))
    assert http_headers(key, secret, payload, ts)["X-Signature"] == node_envelope(key, secret, payload, ts).sig.hex()


def test_a_signal_dict_becomes_the_same_payload():
    signal = {"request_id": "r1", "timestamp": 1.5, "strategy_id": "s", "symbol": "AAPL", "action": "BUY",
              "quantity": 3}
    assert client_prepare(signal) == node_prepare(signal)
    fresh = {"strategy_id": "s"}
    rid, payload = client_prepare(fresh)
    assert rid and msgspec.msgpack.decode(payload)["request_id"] == rid
    assert client_prepare(fresh) == (rid, payload), "the same dict again is the same signal (a retry)"


@given(strategy=st.text(max_size=20), kinds=st.none() | st.lists(st.sampled_from(list(cw.ExecKind)), max_size=3))
def test_subscription_prefixes_are_the_nodes(strategy, kinds):
    node_kinds = None if kinds is None else [nm.ExecKind(k) for k in kinds]
    assert cw.topic_prefixes(strategy, kinds) == nm.topic_prefixes(strategy, node_kinds)


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
