"""Builders: one function per actor kind that makes its plain service object from config.

Kept apart from Ray so tests build the same objects in-process (no cluster needed). Each builder
imports its own kind's module: an actor process loads what it runs (only the validator numba's risk
kernels, only a Nautilus engine NautilusTrader), which is most of an actor's start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actors.wiring import EngineWiring
from node.config import BrokerConfig, EngineConfig, NodeConfig, StorageConfig
from node.errors import ConfigError
from node.instruments import Multipliers, node_multipliers
from node.logs import configure as configure_logging

if TYPE_CHECKING:
    from actors.broker import BrokerHost
    from actors.service import LoopService
    from actors.validator import Validator
    from node.intake import RiskCheck


def build_venue(cfg: BrokerConfig, storage: StorageConfig | None = None, node_id: str = "",
                multipliers: Multipliers | None = None):
    """`multipliers`: the node's contract multipliers (its risk config, `node_multipliers`): the paper
    venue sizes a notional by them and values its account at them; the broker venues size a notional
    by them and value an option position the broker gives no multiplier for at them."""
    if cfg.kind == "paper":
        prefix = cfg.name + "-" if cfg.name else ""  # exec ids unique across the node's paper venues
        redis_url = storage.redis_url if storage is not None else None
        if cfg.paper.persist and redis_url and node_id:  # the account outlives the adapter, as a broker's does
            from adapters.paper.journal import log_key, open_paper_venue

            return open_paper_venue(cfg.paper, redis_url, log_key(node_id, cfg.name), multipliers=multipliers,
                                    exec_prefix=prefix)
        from adapters.paper.venue import PaperVenue

        return PaperVenue(cfg.paper, multipliers=multipliers, exec_prefix=prefix)
    if cfg.kind == "paper-remote":
        if not cfg.exchange_endpoint:
            raise ConfigError("broker.exchange_endpoint: required for kind paper-remote")
        from adapters.paper.remote import RemoteVenue

        return RemoteVenue(cfg.exchange_endpoint)
    if cfg.kind == "lean":
        from adapters.engines.lean.bridge import LeanBridge

        return LeanBridge(cfg.lean)
    if cfg.kind == "schwab":
        import msgspec

        from adapters.brokers.schwab.venue import SchwabVenue

        sc = cfg.schwab
        if storage is not None:  # the node's own Redis and PostgreSQL unless the broker names others
            sc = msgspec.structs.replace(
                sc, redis_url=sc.redis_url or storage.redis_url or "", database_url=sc.database_url or storage.database_url or "")
        if not (sc.account_hash and sc.redis_url and sc.database_url):
            raise ConfigError("broker.schwab: account_hash, redis_url and database_url are required for kind schwab")
        return SchwabVenue(sc, multipliers=multipliers)
    if cfg.kind == "ibkr":
        from adapters.brokers.ibkr.venue import IbkrVenue

        return IbkrVenue(cfg.ibkr, multipliers=multipliers)
    raise ConfigError(
        "broker.kind: unknown broker kind " + repr(cfg.kind) + " (known: paper, paper-remote, lean, schwab, ibkr)")


def build_broker(cfg: NodeConfig, broker: BrokerConfig | None = None, port: int = 0) -> BrokerHost:
    from actors.broker import BrokerHost

    broker = broker or cfg.broker
    groups = frozenset(g.name for g in cfg.group_list())
    multipliers = node_multipliers(cfg.risk)
    host = BrokerHost(broker.name, cfg.bind_host, build_venue(broker, cfg.storage, cfg.node_id, multipliers), port=port,
                      groups=groups, roll_hour_utc=cfg.daily_roll_hour_utc)
    host.gc_freeze, host.gc_threshold0 = cfg.tuning.gc_freeze, cfg.tuning.gc_threshold0
    return host


def build_engine(cfg: NodeConfig, engine: EngineConfig, wiring: EngineWiring) -> LoopService:
    if engine.kind == "nautilus":
        from actors.nautilus_engine import NautilusEngineHost

        return NautilusEngineHost(cfg, engine.name, wiring)
    if engine.kind != "native":
        raise ConfigError("engines: unknown engine kind " + repr(engine.kind) + " (known: native, nautilus)")
    from actors.engine import EngineHost

    return EngineHost(cfg, engine.name, wiring)


def build_validator(cfg: NodeConfig, redis_url: str, engine_intake: str, events_endpoint: str,
                    initial_states: tuple = (), risk: RiskCheck | None = None) -> Validator:
    from actors.validator import Validator

    return Validator(cfg, redis_url, engine_intake, events_endpoint, risk=risk, initial_states=initial_states)


def prepare_validator(cfg: NodeConfig) -> dict:
    """What of a validator needs only its config: its module's imports (numba among them) and its
    risk check, kernels compiled (or loaded from numba's cache); `build_validator`'s keywords."""
    from actors.validator import default_risk

    return {"risk": default_risk(cfg)}


BUILDERS = {"broker": build_broker, "engine": build_engine, "validator": build_validator}
#: kinds whose process can start before their addresses are known (`ServiceActor(..., later=True)`):
#: the preparer does the config-only part, the builder the rest once `open` brings the addresses
PREPARERS = {"validator": prepare_validator}


def build(kind: str, *args, **kwargs) -> LoopService:
    if args and isinstance(args[0], NodeConfig):
        configure_logging(args[0])  # this actor process's `nae` loggers (node.logs)
    return BUILDERS[kind](*args, **kwargs)


def prepare(kind: str, cfg: NodeConfig) -> dict:
    configure_logging(cfg)
    return PREPARERS[kind](cfg)
