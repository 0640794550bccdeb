"""The CLI's parsing and its offline commands, in-process: `--config` anywhere, the dashboard flag
defaulting to the config, `config check` hiding secrets, one-line refusals."""

import json

import pytest

from node.cli import build_parser, main

SECRET = "s3cret-signing-key-0123456789"
TOKEN = "t0ken-admin-9876543210"
PW = "db-pa55word"


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "n.toml", "status"],
        ["status", "--config", "n.toml"],
        ["--config", "other.toml", "status", "--config", "n.toml"],  # the nearer one wins
        ["up", "--config", "n.toml", "--no-dashboard"],
        ["admin", "kill", "--config", "n.toml"],
        ["config", "check", "--config", "n.toml"],
    ],
)
def test_config_anywhere(argv):
    assert build_parser().parse_args(argv).config == "n.toml"


def test_no_config_is_none_and_dashboard_defaults_to_the_config():
    args = build_parser().parse_args(["up"])
    assert args.config is None and args.dashboard is None
    assert build_parser().parse_args(["up", "--dashboard"]).dashboard is True
    assert build_parser().parse_args(["up", "--no-dashboard"]).dashboard is False


def test_commands_that_talk_to_a_node_are_bounded():
    for argv in (["status"], ["admin", "kill"], ["failover"], ["failback"], ["broker-failover"], ["orders", "stranded"]):
        assert build_parser().parse_args(argv).timeout > 0


def test_config_check_prints_the_config_without_secrets(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NAE_SIGNING_KEYS", raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql://nae:" + PW + "@db:5432/nae")
    cfg = tmp_path / "n.toml"
    cfg.write_text('[signing]\nkeys = { optimus = "%s" }\n[api]\nadmin_token = "%s"\n'
                   '[[engines]]\nname = "a"\nkind = "nautilus"\n' % (SECRET, TOKEN))
    assert main(["config", "check", "--config", str(cfg)]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["signing"]["keys"] == {"optimus": "***"} and doc["api"]["admin_token"] == "***"
    assert doc["storage"]["database_url"] == "postgresql://nae:***@db:5432/nae"
    assert doc["engines"] == [{"name": "a", "kind": "nautilus"}]
    for secret in (SECRET, TOKEN, PW):
        assert secret not in out + err
    assert "config OK" in err


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ('[[engines]]\nname = "a"\nkind = "pybroker"\n', "engines[0].kind"),
        ('[broker]\nkind = "schwabb"\n', "broker.kind"),
        ("[intake]\nport = 70000\n", "intake.port"),
        ('[logging]\nformat = "xml"\n', "logging.format"),
    ],
)
def test_config_check_refuses_in_one_line(tmp_path, capsys, toml, named):
    cfg = tmp_path / "n.toml"
    cfg.write_text(toml)
    assert main(["config", "check", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err and "Traceback" not in err


def test_status_with_no_node_is_one_line_at_once(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cfg = tmp_path / "n.toml"
    cfg.write_text('data_dir = "%s"\n' % (tmp_path / "data"))
    assert main(["status", "--config", str(cfg), "--timeout", "5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no running node" in err


def test_status_with_a_stale_endpoints_file_is_one_line_at_once(tmp_path, capsys, monkeypatch):
    import socket

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    data = tmp_path / "data"
    data.mkdir()
    (data / "endpoints.json").write_text(json.dumps({"ray": "127.0.0.1:9", "pid": 2 ** 22 + 17, "host": socket.gethostname(),
                                                    "node_id": "nae-1"}))
    cfg = tmp_path / "n.toml"
    cfg.write_text('data_dir = "%s"\n' % data)
    assert main(["admin", "kill", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not running" in err and "stale" in err


def _dashboard_deps_missing() -> bool:
    from ray._private.utils import get_dashboard_dependency_error

    return get_dashboard_dependency_error() is not None


@pytest.mark.skipif(not _dashboard_deps_missing(), reason="ray[default] is installed: the dashboard would start")
def test_a_dashboard_without_its_packages_is_refused_before_anything_starts(tmp_path, capsys):
    cfg = tmp_path / "n.toml"
    cfg.write_text('dashboard = true\ndata_dir = "%s"\n' % (tmp_path / "data"))
    assert main(["up", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ray[default]" in err and "--no-dashboard" in err
    assert not (tmp_path / "data").exists()  # nothing touched


@pytest.mark.parametrize(
    "argv",
    [
        ["orders", "resolve"],
        ["orders", "resolve", "--order", "NAE-x-0"],
        ["orders", "resolve", "--order", "NAE-x-0", "--filled", "5"],
        ["orders", "settle"],
    ],
)
def test_orders_verbs_need_their_arguments(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("execnode: orders ")


@pytest.mark.parametrize(
    "argv",
    [
        ["admin", "mode"],
        ["admin", "mode", "s1"],
        ["admin", "mode", "s1", "live", "extra"],
        ["admin", "kill", "s1"],
        ["admin", "kill", "--force"],
    ],
)
def test_admin_mode_needs_a_strategy_and_a_mode_and_nothing_else_takes_arguments(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("execnode: admin ")
