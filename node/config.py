"""Node configuration: frozen, typed, self-validating structs, passed to constructors.

Nothing here reads the environment at import time. `load_config` reads an optional TOML file and
then the few documented environment overrides (REDIS_URL, DATABASE_URL, RAY_ADDRESS,
NAE_SIGNING_KEYS, NAE_ADMIN_TOKEN, NAE_ADVERTISE_HOST; the secret ones also from `<NAME>_FILE` or
Vault, see `node.secrets`), and validates the result; a bad value raises `ConfigError` naming the setting.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal, Mapping

import msgspec

from node import secrets
from node.errors import ConfigError
from node.risk.config import RiskLimits
from node.trading_mode import CanaryBasis, TradingMode

PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0.0)]
NonNegFloat = Annotated[float, msgspec.Meta(ge=0.0)]
Probability = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]

_BASE = dict(frozen=True, kw_only=True, forbid_unknown_fields=True)


class SigningConfig(msgspec.Struct, **_BASE):
    """Keys by key id (so they rotate: add the new id, move clients, drop the old one)."""

    keys: dict[str, str] = {}
    timestamp_window_ms: PositiveInt = 5_000
    #: how long a request_id is remembered; older signals are refused as stale
    dedupe_window_secs: PositiveInt = 600
    dedupe_max_entries: PositiveInt = 2_000_000
    #: key id -> the strategies it may trade (exact ids, or a prefix ending in `*`); a signal of
    #: another strategy is REJECTED KEY_NOT_ALLOWED. Empty: no binding (every key, every strategy);
    #: once set, a key missing here may trade nothing.
    key_strategies: dict[str, list[str]] = {}


class IntakeConfig(msgspec.Struct, **_BASE):
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 5555  # 0 = any free port
    max_frame_bytes: PositiveInt = 64 * 1024  # larger frames get REJECTED FRAME_TOO_LARGE
    transport_max_bytes: PositiveInt = 32 * 1024 * 1024  # beyond this ZeroMQ drops the peer
    batch_max: PositiveInt = 1_024  # signals handled per wake-up (one durable append)
    #: strategies the gate admits (exact ids, or a prefix ending in `*`); empty: any, up to `max_strategies`
    strategies: list[str] = []
    max_strategies: PositiveInt = 256  # distinct strategies that reach risk; beyond: UNKNOWN_STRATEGY
    max_symbols: PositiveInt = 1_024  # distinct symbols that reach risk (no allow-list); beyond: UNKNOWN_SYMBOL
    max_correlation_groups: PositiveInt = 256  # distinct correlation groups that reach risk; beyond: SCHEMA_INVALID
    min_order_quantity: PositiveFloat = 1e-4  # smaller (notional at the last price too): ZERO_QUANTITY
    key_rate_per_sec: PositiveFloat = 20_000.0  # signals one key may send (token bucket); beyond: RATE_LIMITED
    key_burst: PositiveFloat = 40_000.0
    #: frames one ZeroMQ peer may send that fail before authentication (malformed, unsigned, badly
    #: signed, unknown key, stale); beyond: every frame of that peer is answered RATE_LIMITED unjudged
    peer_unauthenticated_per_sec: PositiveFloat = 100.0
    peer_unauthenticated_burst: PositiveFloat = 1_000.0
    max_peers: PositiveInt = 4_096  # peers whose count is kept (least recently seen dropped first)
    #: frames ZeroMQ queues per peer each way (the intake's RCVHWM and SNDHWM; a peer that reads no
    #: replies loses those beyond it): bounds what one connection can make the validator hold
    peer_queue_frames: PositiveInt = 10_000
    #: a wake-up stops reading after this many peer-limited frames: what waits is fair-queued per peer
    peer_refusals_per_wake: PositiveInt = 64


class PaperSymbol(msgspec.Struct, **_BASE):
    symbol: str
    price: PositiveFloat
    volatility_bps: NonNegFloat = 2.0  # per-tick standard deviation of the price process
    top_size: PositiveFloat = 500.0  # shares available per price level


DEFAULT_PAPER_SYMBOLS = (
    PaperSymbol(symbol="AAPL", price=230.0),
    PaperSymbol(symbol="MSFT", price=420.0),
    PaperSymbol(symbol="NVDA", price=140.0),
    PaperSymbol(symbol="SPY", price=590.0),
    PaperSymbol(symbol="TSLA", price=340.0),
    PaperSymbol(symbol="QQQ", price=510.0),
)


class PaperVenueConfig(msgspec.Struct, **_BASE):
    """The simulated venue: a price process per symbol, partial fills, latency and rejects."""

    symbols: list[PaperSymbol] = msgspec.field(default_factory=lambda: list(DEFAULT_PAPER_SYMBOLS))
    latency_us: NonNegInt = 0  # venue acknowledgement delay
    fill_interval_us: NonNegInt = 0  # delay between partial fills of one order
    reject_rate: Probability = 0.0
    tick_interval_ms: PositiveInt = 50  # price process step
    level_spacing_bps: NonNegFloat = 1.0  # price step between liquidity levels
    seed: int = 7
    starting_cash_usd: NonNegFloat = 1_000_000.0  # the account's cash before its first fill
    #: keep the account (orders, fills, positions, cash) across restarts, in the node's Redis under
    #: `<node_id>.paper.<broker name>`, as a broker keeps it (adapters/paper/journal.py)
    persist: bool = True


class EngineKind(StrEnum):
    """What hosts an engine: the native order manager or a NautilusTrader kernel (child process)."""

    NATIVE = "native"
    NAUTILUS = "nautilus"


class BrokerKind(StrEnum):
    """What a broker adapter fronts (see `BrokerConfig`)."""

    PAPER = "paper"
    PAPER_REMOTE = "paper-remote"
    LEAN = "lean"
    SCHWAB = "schwab"
    IBKR = "ibkr"


class EngineConfig(msgspec.Struct, **_BASE):
    name: str = "native"
    kind: EngineKind = EngineKind.NATIVE


class LeanBridgeConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where the bridge listens for the LEAN algorithm and how long it waits for LEAN's word.

    LEAN's own broker round trip is 100 ms to 5 s (LEAN docs, notes/peers.md), so the timeouts
    are seconds, not milliseconds. `port` 0 takes any free port (tests); a deployment fixes it,
    since the algorithm's `nae-bridge-endpoint` parameter names it.
    """

    bind_host: str = "127.0.0.1"
    port: Port = 5570
    ack_timeout_ms: PositiveInt = 10_000  # a submit with no word from LEAN by then is UNKNOWN
    cancel_timeout_ms: PositiveInt = 10_000  # likewise for a cancel
    status_timeout_ms: PositiveInt = 30_000  # snapshot(): wait this long for LEAN to connect and list
    peer_silence_ms: PositiveInt = 5_000  # no heartbeat for this long: the peer counts as gone


#: Schwab's refresh token lives 7 days from the login that made it
REFRESH_TOKEN_LIFETIME_S = 7 * 24 * 3600


class SchwabConfig(msgspec.Struct, **_BASE):
    """One Schwab account behind a broker adapter (kind "schwab", `adapters/brokers/schwab/`)."""

    #: the app key and secret of the Schwab developer app (from a secret file, never in the repo)
    api_key: str = ""
    app_secret: str = ""
    #: the account's hash (`GET /trader/v1/accounts/accountNumbers`), what every order path names
    account_hash: str = ""
    #: Schwab's API; a test points it at the fake, an operator may at a proxy
    base_url: str = "https://api.schwabapi.com"
    #: where the OAuth tokens live: PostgreSQL `oauth_tokens` (sealed by `node/token_vault.py`)
    database_url: str = ""
    #: the vault's keys: key id -> 64 hex chars (32 bytes); the current one seals
    vault_keys_hex: dict[str, str] = {}
    vault_key_id: str = ""
    #: where the order budget and the client-order-id map live (shared by every adapter of the account)
    redis_url: str = ""
    #: refresh the access token this long before it expires
    refresh_before_expiry_s: PositiveInt = 300
    #: the refresh token's life from its login, and how long ahead its end is surfaced
    refresh_token_lifetime_s: PositiveInt = REFRESH_TOKEN_LIFETIME_S
    login_warn_before_s: PositiveInt = 24 * 3600
    #: Schwab's per-account limits on order requests (place, replace, cancel)
    order_requests_per_min: PositiveInt = 120
    order_requests_per_day: PositiveInt = 4_000
    #: a request over the minute's budget waits at most this long for the next minute, else is refused
    budget_wait_ms: NonNegInt = 0
    #: a request with no answer within this is UNKNOWN (submit) or unconfirmed (cancel, replace)
    request_timeout_ms: PositiveInt = 5_000
    #: how often the order list is swept for status and fills (the backstop of every answer)
    sweep_interval_ms: PositiveInt = 1_000
    #: an UNKNOWN submit no sweep has found after this long was never placed (REJECTED, NOT_AT_BROKER)
    unknown_settle_ms: PositiveInt = 30_000
    #: status and fills pushed by Schwab's streamer (ACCT_ACTIVITY, `adapters/brokers/schwab/stream.py`);
    #: the sweep above stays the backstop of whatever the stream misses
    stream: bool = True
    #: a stream with no frame (data or heartbeat) for this long is dead: reconnected, and swept at once
    stream_idle_timeout_ms: PositiveInt = 30_000
    #: a failed (re)connect waits this long, doubling up to `stream_reconnect_max_ms`
    stream_reconnect_min_ms: PositiveInt = 250
    stream_reconnect_max_ms: PositiveInt = 10_000

    def vault_keys(self) -> dict[str, bytes]:
        return {k: bytes.fromhex(v) for k, v in self.vault_keys_hex.items()}


class MaintenanceWindow(msgspec.Struct, **_BASE):
    """A daily window the broker is away (IBKR's nightly reset, IB Gateway's daily restart), in `tz`."""

    start_hhmm: Annotated[str, msgspec.Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    duration_min: PositiveInt
    tz: str = "America/New_York"


class IbkrConfig(msgspec.Struct, **_BASE):
    """One IBKR account through TWS / IB Gateway (kind "ibkr", `adapters/brokers/ibkr/`)."""

    host: str = "127.0.0.1"
    port: Port = 4001
    client_id: NonNegInt = 17
    account: str = ""  # "" = the one account the gateway manages
    connect_timeout_ms: PositiveInt = 4_000
    #: after a drop, try again this often (each reconnect sweeps executions)
    reconnect_interval_ms: PositiveInt = 2_000
    #: a placed order with no status from TWS by then is UNKNOWN
    ack_timeout_ms: PositiveInt = 5_000
    #: ib_async's own throttle of messages to TWS (IBKR allows 50 a second)
    max_messages_per_s: PositiveInt = 45
    #: the nightly reset and the gateway's restart, known in advance: new orders in them are refused
    #: (BROKER_MAINTENANCE) or, with `hold_in_window`, held and sent when the window ends
    windows: list[MaintenanceWindow] = msgspec.field(
        default_factory=lambda: [MaintenanceWindow(start_hhmm="23:45", duration_min=60)])
    hold_in_window: bool = False


class BrokerConfig(msgspec.Struct, **_BASE):
    """kind "paper": the simulated venue inside the adapter; "paper-remote": the paper exchange in
    its own process (`python -m actors.exchange`), at `exchange_endpoint`; "lean": a self-hosted
    LEAN running `adapters/engines/lean/NaeBridgeAlgorithm.cs` (docs/lean.md); "schwab" and "ibkr": the
    real brokers (adapters/brokers/, README "Real brokers")."""

    name: str = "paper"
    kind: BrokerKind = BrokerKind.PAPER
    paper: PaperVenueConfig = PaperVenueConfig()
    exchange_endpoint: str = ""
    lean: LeanBridgeConfig = LeanBridgeConfig()
    schwab: SchwabConfig = SchwabConfig()
    ibkr: IbkrConfig = IbkrConfig()
    #: brokers with the same account see the same orders (two adapters in front of one account):
    #: a failover between them asks the new one and re-drives; between different accounts, orders
    #: left unanswered at the lost one are never sent again (they stay UNKNOWN, BROKER_LOST).
    #: Default: the exchange endpoint for paper-remote, else the broker's own name.
    account: str = ""

    @property
    def account_id(self) -> str:
        if self.account:
            return self.account
        if self.kind == "paper-remote" and self.exchange_endpoint:
            return "exchange@" + self.exchange_endpoint
        return "broker:" + self.name

    @property
    def venue_inside(self) -> bool:
        """The venue lives in the adapter's process (kind "paper"): the adapter's book is the venue's,
        and a restarted adapter starts on an empty one (or, with `paper.persist`, on the one it restores)."""
        return self.kind == BrokerKind.PAPER


class EngineGroupConfig(msgspec.Struct, **_BASE):
    """One lane of execution: its engines in priority order (the first leads, the others are hot
    standbys) and the brokers it may use in priority order (the first is active; the next takes
    over when it dies). Each group has its own epoch, fenced per group at every broker."""

    name: Annotated[str, msgspec.Meta(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    engines: list[EngineConfig]
    brokers: list[str] = []  # names from `brokers`; empty: every broker, in their order


class RouteConfig(msgspec.Struct, **_BASE):
    """Signals of these strategies (exact ids, or a prefix ending in `*`) and/or these symbols go to
    `group`. An empty list matches everything; the first route that matches wins."""

    group: str
    strategies: list[str] = []
    symbols: list[str] = []


class ModeConfig(msgspec.Struct, **_BASE):
    """Strategies (exact ids, or a prefix ending in `*`) traded in modes: `paper_group` is their paper
    route, `live_group` their live one; `mode` is where they start (an admin promotion moves it, and
    the move is kept in the control stream). Canary: at most `canary_share` of the strategy's flow
    since it became canary (by `canary_basis`) goes live, and never more than `canary_max_orders`
    signals or `canary_max_notional_usd` (0: no such cap) in all."""

    strategies: list[str]
    paper_group: str
    live_group: str
    mode: TradingMode = TradingMode.PAPER
    canary_basis: CanaryBasis = CanaryBasis.COUNT
    canary_share: Probability = 0.1
    canary_max_orders: NonNegInt = 0
    canary_max_notional_usd: NonNegFloat = 0.0


class StorageConfig(msgspec.Struct, **_BASE):
    """Redis and PostgreSQL; None means the embedded server under `data_dir`."""

    redis_url: str | None = None
    database_url: str | None = None
    signals_stream: str = "execution.signals"
    events_stream: str = "execution.events"
    monitoring_stream: str = "monitoring.events"
    intake_stream: str = "execution.intake"  # the fallback intake (see node.fallback)
    controls_stream: str = "execution.controls"  # operator controls (node.risk.controls), never trimmed
    shadow_stream: str = "execution.shadow"  # reports of shadow copies at the paper group (node.modes)
    ledger: bool = True  # drain the streams into PostgreSQL (the ledger actor)
    stream_maxlen: PositiveInt = 10_000_000
    #: accept a Redis with `appendonly no` (ACKed signals then live in memory only); refused by default
    allow_volatile_redis: bool = False
    #: the embedded Redis's AOF fsync: "everysec" (a host crash may lose up to ~1 s of ACKed signals)
    #: or "always" (fsync before each append returns; see README "Never lose" for its measured cost)
    embedded_redis_appendfsync: Literal["everysec", "always"] = "everysec"


class ApiConfig(msgspec.Struct, **_BASE):
    """The operator HTTP API (health, metrics, admin, `POST /v1/signals`); port 0 = any free port."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: Port = 8080
    admin_token: str = ""  # empty: the admin endpoints answer 403
    max_body_bytes: PositiveInt = 65_536  # POST /v1/signals: a larger body is refused (413)
    intake_timeout_ms: PositiveInt = 2_000  # POST /v1/signals: no verdict by then -> 503
    stats_timeout_ms: PositiveInt = 2_000  # /health and /metrics: an actor silent this long is down
    #: per client address, every endpoint (token bucket); beyond: 429 RATE_LIMITED, before any work
    peer_rate_per_sec: PositiveFloat = 500.0
    peer_burst: PositiveFloat = 1_000.0
    header_timeout_ms: PositiveInt = 5_000  # a request's line and headers not in by then: connection closed
    body_timeout_ms: PositiveInt = 5_000  # its body not in by then: connection closed
    max_connections: PositiveInt = 512  # open connections + requests in progress; beyond: 503
    #: /readyz answers 503 while the ledger has more entries than this not yet in PostgreSQL
    ready_max_ledger_lag: PositiveInt = 100_000


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"  # one JSON object a line (ts, level, logger, pid, msg, exc)


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class LoggingConfig(msgspec.Struct, **_BASE):
    """stdlib logging in every process of the node (node.logs): stderr, and `file` under `data_dir`."""

    level: LogLevel = LogLevel.INFO
    format: LogFormat = LogFormat.TEXT
    file: str = "node.log"  # relative to data_dir; "" = stderr only
    #: a repeating error (same logger, same exception type) is logged at most once per this long
    repeat_interval_ms: PositiveInt = 10_000


class ReconcileConfig(msgspec.Struct, **_BASE):
    """The reconciler (actors/reconciler.py): node + ledger vs every broker account, at start-up
    (before the node trades), every `reconcile_every_secs` (0: never on a schedule), after every
    failover and broker move, and on demand. A drift the broker's fills do not explain moves the
    strategy (`drift_scope = "strategy"`; node-wide when no strategy can be named) or the node to
    `on_drift`. Fees: the broker's, else this schedule."""

    enabled: bool = True
    reconcile_every_secs: NonNegInt = 60
    reconnect_poll_ms: PositiveInt = 1_000  # how often the brokers' links are looked at (a run after a reconnect)
    on_drift: Literal["REDUCING", "HALTED"] = "HALTED"
    drift_scope: Literal["strategy", "node"] = "strategy"
    adopt: bool = True  # book the broker's orders and fills the node lacks (never re-sent)
    settle_ms: NonNegInt = 2_000  # broker fills younger than this are in flight: judged next run
    # a start-up run that cannot compare (a broker adapter restarting) tries this often in all before it
    # halts the node, the waits doubling from startup_retry_ms up to startup_retry_max_ms; while its
    # RECONCILE_FAILED halt is in force the reconciler runs again every startup_retry_max_ms and lifts it
    # at the first run that compares clean (node.reconcile_halts)
    startup_attempts: PositiveInt = 5
    startup_retry_ms: PositiveInt = 500
    startup_retry_max_ms: PositiveInt = 8_000
    qty_tolerance: NonNegFloat = 1e-6
    px_tolerance: NonNegFloat = 1e-6  # relative
    cash_tolerance_usd: NonNegFloat = 0.01
    pnl_tolerance_usd: NonNegFloat = 0.05  # node vs the broker's account view, per symbol
    external_strategy: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] = "EXTERNAL"
    fee_per_share_usd: NonNegFloat = 0.0
    fee_bps: NonNegFloat = 0.0
    fee_min_per_fill_usd: NonNegFloat = 0.0
    reports_dir: str = ""  # Markdown reports also as files here ("" : in PostgreSQL only)


class TuningConfig(msgspec.Struct, **_BASE):
    """How the node's processes share a small machine, for the signal path's latency (README
    "Latency"). The intake (validator) and the leading engines keep the CPU; work that can wait
    (the ledger's drain into PostgreSQL, the reconciler, hot standbys) yields it."""

    #: after an actor opened its loop: one full collection, then `gc.freeze()` (the start-up heap,
    #: Ray's and numba's objects, is never walked by a collection again; node.gcwatch)
    gc_freeze: bool = True
    #: allocations between young collections (CPython's default 700; 0 keeps the interpreter's)
    gc_threshold0: NonNegInt = 0
    #: role -> niceness of its process ("ledger", "reconciler", "validator", "broker", "engine" or
    #: "engine:<name>" for a leader, "standby" for an engine while it is a hot standby: back to the
    #: engine's own when promoted). A role not named runs at 0; an empty table leaves niceness alone.
    #: The drain into PostgreSQL and the reconciler wait for a free core; set {"standby": 5} too when
    #: standbys share the intake's cores (a promoted standby catches up from the signal log anyway)
    nice: dict[str, Annotated[int, msgspec.Meta(ge=0, le=19)]] = msgspec.field(
        default_factory=lambda: {"ledger": 5, "reconciler": 5})
    #: role -> the CPUs its process may run on ("validator", "engine", "broker", "ledger", ...;
    #: empty or absent: any). On 2 cores, e.g. {"ledger": [1]} keeps the drain off the intake's core.
    #: A role named here (an empty list included: any CPU) is not moved by `isolate_intake`
    cpu_affinity: dict[str, list[NonNegInt]] = {}
    #: on a machine of 2+ CPUs the validator gets the first CPU to itself and every other actor it
    #: tunes (engines, standbys, broker adapters, ledger, reconciler) the rest (node.proctune). On the
    #: 2-core VM, A/B in one run (bench.ab, 4 rounds each, load 3-4): the user path's paced 1,000/s
    #: p50 928 -> 426 us, p99 4.4 -> 3.1 ms, blocking client p50 703 -> 252 us, fill p50 5.2 -> 3.1 ms
    isolate_intake: bool = True
    #: a hot standby sleeps this long after each wake-up (it follows the signals and the reports; what
    #: came meanwhile is taken in one wake-up, and its CPU per signal is mostly per wake-up). 0: it
    #: wakes for every message. A promotion waits this long at most
    standby_wake_ms: NonNegInt = 5
    #: a native leader appends its published reports to `execution.events` (with its checkpoint and
    #: open-order index, one round trip) at most this often; 0: at every wake-up. Reports are
    #: published at once whatever it is: only the ledger's copy waits (a standby logs what a dead
    #: leader published and never appended: node.followed)
    events_flush_ms: NonNegInt = 5


class NodeConfig(msgspec.Struct, **_BASE):
    node_id: str = "nae-1"
    bind_host: str = "127.0.0.1"
    #: the address written into the endpoints actors register (what peers and clients connect to).
    #: "": `bind_host`, or, when that is a wildcard (0.0.0.0), the address of the Ray node the actor
    #: runs on (each machine of a cluster advertises its own). Set it on one machine behind NAT.
    advertise_host: str = ""
    events_port: Port = 0  # the execution-reports feed (XPUB); 0 = any free port, a deployment fixes it
    #: role ("supervisor", "validator", "engine:<name>", "broker:<name>", or "engine" / "broker" for all
    #: of a kind) -> a Ray custom resource the machine that runs it offers (`ray start --resources`)
    placement: dict[str, str] = {}
    data_dir: str = ".data"
    ray_address: str | None = None
    ray_namespace: str = "nae"
    dashboard: bool = False
    signing: SigningConfig = SigningConfig()
    intake: IntakeConfig = IntakeConfig()
    risk: RiskLimits = RiskLimits()
    equity_usd: PositiveFloat = 1_000_000.0  # account equity the percentage limits refer to
    engines: list[EngineConfig] = msgspec.field(default_factory=lambda: [EngineConfig()])  # priority order
    broker: BrokerConfig = BrokerConfig()
    #: several brokers (priority order); empty: just `broker`. See `broker_list()`.
    brokers: list[BrokerConfig] = []
    #: engine groups; empty: one group "default" of `engines` over every broker. See `group_list()`.
    groups: list[EngineGroupConfig] = []
    routes: list[RouteConfig] = []  # strategy / symbol -> group; no match: the first group
    reject_unrouted: bool = False  # no route matches: REJECTED NO_ROUTE instead of the first group
    #: strategies traded in paper / shadow / canary / live modes (node.modes); they bypass `routes`
    modes: list[ModeConfig] = []
    storage: StorageConfig = StorageConfig()
    api: ApiConfig = ApiConfig()
    reconcile: ReconcileConfig = ReconcileConfig()
    logging: LoggingConfig = LoggingConfig()
    tuning: TuningConfig = TuningConfig()
    heartbeat_interval_ms: PositiveInt = 20  # engines -> supervisor, over ZeroMQ
    heartbeat_misses: PositiveInt = 3  # silent this many intervals in a row = dead: fail over
    #: ... unless the leader's process is still there (this machine): then only slow (a loaded host, a
    #: pause) until it has been silent this long; a frozen or stuck leader is failed over after it
    leader_alive_silence_ms: PositiveInt = 1_000
    #: an order sent with no word from its broker adapter by then is UNKNOWN (TIMEOUT) at the engine:
    #: new risk on its symbol waits until the broker's answer or a sweep resolves it
    submit_timeout_ms: PositiveInt = 30_000
    #: a cancel sent with no word on its order by then (the order not finished) is UNKNOWN
    #: (CANCEL_TIMEOUT): new risk on the symbol waits until the broker's word resolves it
    cancel_timeout_ms: PositiveInt = 10_000
    #: the leader asks its broker adapter about an order made UNKNOWN by a deadline this often
    #: (without taking anything over) and takes its word
    unknown_ask_every_ms: PositiveInt = 5_000
    #: a broker adapter silent this long (supervisor pings over ZeroMQ) = dead: its groups move to
    #: their next broker. Longer than the engines' limit: a move between accounts strands orders.
    broker_dead_ms: PositiveInt = 500
    #: once a day at this UTC hour, brokers and engines forget the orders that finished before the
    #: previous roll (node.daily_roll: their per-order maps stay bounded; open orders are kept)
    daily_roll_hour_utc: Annotated[int, msgspec.Meta(ge=0, le=23)] = 22

    def __post_init__(self) -> None:
        brokers = {b.name for b in self.broker_list()}
        if len(brokers) != len(self.broker_list()):
            raise ValueError("brokers: two brokers share a name")
        groups = self.group_list()
        names = [g.name for g in groups]
        if len(set(names)) != len(names):
            raise ValueError("groups: two groups share a name")
        engines = [e.name for g in groups for e in g.engines]
        if len(set(engines)) != len(engines):
            raise ValueError("groups: an engine name is used twice")
        for g in groups:
            if not g.engines:
                raise ValueError("groups." + g.name + ": no engines")
            for b in g.brokers:
                if b not in brokers:
                    raise ValueError("groups." + g.name + ": unknown broker " + repr(b))
        for r in self.routes:
            if r.group not in names:
                raise ValueError("routes: unknown group " + repr(r.group))
        for m in self.modes:
            for gname in (m.paper_group, m.live_group):
                if gname not in names:
                    raise ValueError("modes: unknown group " + repr(gname))
            if m.paper_group == m.live_group:
                raise ValueError("modes: paper_group and live_group are one group " + repr(m.paper_group))
            if not m.strategies:
                raise ValueError("modes: no strategies")
            for grp in groups:
                if grp.name in (m.paper_group, m.live_group) and any(e.kind != EngineKind.NATIVE for e in grp.engines):
                    raise ValueError("modes: group " + repr(grp.name) + " has a Nautilus engine (modes need native groups)")
        roles = {"supervisor", "validator", "engine", "broker"} | {"engine:" + e for e in engines} | {
            "broker:" + b for b in brokers}
        for role, resource in self.placement.items():
            if role not in roles:
                raise ValueError("placement: unknown role " + repr(role) + " (known: " + ", ".join(sorted(roles)) + ")")
            if not resource:
                raise ValueError("placement." + role + ": empty resource name")

    def placement_of(self, role: str) -> str:
        """The Ray resource `role` must run on ("" = anywhere): its own entry, else its kind's."""
        return self.placement.get(role) or self.placement.get(role.split(":", 1)[0], "")

    def broker_list(self) -> list[BrokerConfig]:
        """Every broker adapter, in priority order."""
        return list(self.brokers) if self.brokers else [self.broker]

    def group_list(self) -> list[EngineGroupConfig]:
        """Every engine group; the first takes unrouted signals."""
        if self.groups:
            return list(self.groups)
        return [EngineGroupConfig(name=DEFAULT_GROUP, engines=list(self.engines))]

    def group_brokers(self, group: EngineGroupConfig) -> list[BrokerConfig]:
        by_name = {b.name: b for b in self.broker_list()}
        return [by_name[n] for n in group.brokers] if group.brokers else self.broker_list()

    def engine_list(self) -> list[EngineConfig]:
        return [e for g in self.group_list() for e in g.engines]


DEFAULT_GROUP = "default"


def parse_keys(text: str) -> dict[str, str]:
    """`NAE_SIGNING_KEYS="id1:secret1,id2:secret2"` -> {"id1": "secret1", ...}."""
    keys: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key_id, sep, secret = item.partition(":")
        if not sep or not key_id or not secret:
            raise ConfigError(f"NAE_SIGNING_KEYS: expected 'key_id:secret' pairs, got {item[:20]!r}")
        keys[key_id] = secret
    return keys


#: what `load_config` (so `execnode up`, the demo and every CLI command) runs when the file names no
#: engines and no groups: a leader and a hot standby, the HA the README describes, without a config
HOT_STANDBY_ENGINES = ({"name": "native", "kind": "native"}, {"name": "native-standby", "kind": "native"})


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> NodeConfig:
    """Read TOML (optional), apply the environment overrides, validate. Raises `ConfigError`."""
    env = secrets.resolve(os.environ if env is None else env)  # `<NAME>_FILE` and Vault
    raw: dict = {}
    if path is not None:
        try:
            raw = msgspec.toml.decode(Path(path).read_bytes())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except msgspec.DecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
    if "engines" not in raw and "groups" not in raw:
        raw["engines"] = [dict(e) for e in HOT_STANDBY_ENGINES]  # a leader and a hot standby by default
    storage = raw.setdefault("storage", {})
    if env.get("REDIS_URL"):
        storage["redis_url"] = env["REDIS_URL"]
    if env.get("DATABASE_URL"):
        storage["database_url"] = env["DATABASE_URL"]
    if env.get("RAY_ADDRESS"):
        raw["ray_address"] = env["RAY_ADDRESS"]
    if env.get("NAE_SIGNING_KEYS"):
        raw.setdefault("signing", {})["keys"] = parse_keys(env["NAE_SIGNING_KEYS"])
    if env.get("NAE_ADMIN_TOKEN"):
        raw.setdefault("api", {})["admin_token"] = env["NAE_ADMIN_TOKEN"]
    if env.get("NAE_ADVERTISE_HOST"):
        raw["advertise_host"] = env["NAE_ADVERTISE_HOST"]
    try:
        return msgspec.convert(raw, NodeConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None


def with_changes(cfg: msgspec.Struct, **changes: object) -> msgspec.Struct:
    """A copy of a frozen config with some fields replaced."""
    return msgspec.structs.replace(cfg, **changes)
