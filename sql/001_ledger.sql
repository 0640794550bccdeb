-- 001: the execution ledger: signals audit, orders (latest state), fills, order events.
-- Every table has a natural unique key so the ledger's INSERT ... ON CONFLICT DO NOTHING is idempotent:
-- draining the same stream entries twice writes each row once.
-- Write-heavy tables carry only their unique keys: every extra index costs the ledger ~10% of its
-- throughput (bench/ledger_report.py); reporting indexes belong on a replica or a later migration.

CREATE TABLE signals (
    signal_id          text PRIMARY KEY,
    request_id         text NOT NULL UNIQUE,
    strategy_id        text NOT NULL,
    symbol             text NOT NULL,
    action             text NOT NULL,
    side               text NOT NULL,
    quantity           double precision,
    notional           double precision,
    order_type         text NOT NULL,
    limit_price        double precision,
    stop_price         double precision,
    correlation_group  text,
    model_id           text,
    confidence         double precision,
    expected_pnl       double precision,
    signal_ts_s        double precision NOT NULL,
    received_ns        bigint NOT NULL,
    stream_id          text NOT NULL,
    raw                bytea NOT NULL,          -- the exact msgpack SignalAccepted from the stream
    recorded_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT signals_size_chk CHECK ((quantity IS NULL) <> (notional IS NULL))
);

CREATE TABLE orders (
    client_order_id    text PRIMARY KEY,
    signal_id          text NOT NULL DEFAULT '',
    request_id         text NOT NULL DEFAULT '',
    strategy_id        text NOT NULL DEFAULT '',
    symbol             text NOT NULL DEFAULT '',
    side               text NOT NULL,
    venue_order_id     text NOT NULL DEFAULT '',
    state              text NOT NULL,           -- the kind of the latest event: NEW, PARTIAL_FILL, FILL, ...
    cum_qty            double precision NOT NULL DEFAULT 0,
    leaves_qty         double precision NOT NULL DEFAULT 0,
    avg_px             double precision NOT NULL DEFAULT 0,
    reason             text NOT NULL DEFAULT '',
    last_event_ns      bigint NOT NULL,
    stream_pos         bigint NOT NULL,         -- entry id ms * 1e6 + seq: later entries win
    stream_id          text NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE fills (
    exec_id            text PRIMARY KEY,        -- broker-stable execution id
    client_order_id    text NOT NULL,
    venue_order_id     text NOT NULL DEFAULT '',
    signal_id          text NOT NULL DEFAULT '',
    request_id         text NOT NULL DEFAULT '',
    strategy_id        text NOT NULL DEFAULT '',
    symbol             text NOT NULL,
    side               text NOT NULL,
    qty                double precision NOT NULL CHECK (qty > 0),
    px                 double precision NOT NULL,
    cum_qty            double precision NOT NULL,
    ts_ns              bigint NOT NULL,
    stream_id          text NOT NULL,
    recorded_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE order_events (
    client_order_id    text NOT NULL,
    kind               text NOT NULL,
    event_key          text NOT NULL,           -- exec_id for fills, '' for NEW/CANCELED/REJECTED, ts for UNKNOWN
    exec_id            text NOT NULL DEFAULT '',
    venue_order_id     text NOT NULL DEFAULT '',
    last_qty           double precision NOT NULL DEFAULT 0,
    last_px            double precision NOT NULL DEFAULT 0,
    cum_qty            double precision NOT NULL DEFAULT 0,
    leaves_qty         double precision NOT NULL DEFAULT 0,
    avg_px             double precision NOT NULL DEFAULT 0,
    reason             text NOT NULL DEFAULT '',
    ts_ns              bigint NOT NULL,
    stream_id          text NOT NULL,
    recorded_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_order_id, kind, event_key)
);

-- entries the ledger could not decode: kept, acknowledged, never retried in a loop
CREATE TABLE ledger_dead_letters (
    stream             text NOT NULL,
    stream_id          text NOT NULL,
    raw                bytea,
    error              text NOT NULL,
    recorded_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, stream_id)
);
