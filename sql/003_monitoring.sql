-- 003: operational history: everything on the monitoring.events stream, and failovers.

CREATE TABLE monitoring_events (
    stream_id          text PRIMARY KEY,        -- the monitoring.events entry id: one row per entry
    kind               text NOT NULL,
    payload            jsonb NOT NULL,
    ts                 timestamptz NOT NULL,
    recorded_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX monitoring_events_kind_ts_idx ON monitoring_events (kind, ts);

CREATE TABLE failover_events (
    role               text NOT NULL,           -- engine or broker
    epoch              bigint NOT NULL,
    from_name          text NOT NULL DEFAULT '',
    to_name            text NOT NULL,
    reason             text NOT NULL DEFAULT '',
    manual             boolean NOT NULL DEFAULT false,
    ts                 timestamptz NOT NULL,
    stream_id          text NOT NULL,
    recorded_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (role, epoch)
);
