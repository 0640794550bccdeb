-- 011: durable controls (node/risk/controls.py). The ledger drains the control stream
-- (execution.controls) into `strategy_state` (the switches after the newest control of each
-- strategy; strategy_id '*' = node-wide) and `control_events` (every control, for the audit).

ALTER TABLE strategy_state DROP CONSTRAINT IF EXISTS strategy_state_mode_check;
ALTER TABLE strategy_state ADD CONSTRAINT strategy_state_mode_check
    CHECK (mode IN ('NORMAL', 'ACTIVE', 'REDUCING', 'HALTED'));
ALTER TABLE strategy_state ADD COLUMN stream_pos bigint NOT NULL DEFAULT 0;
ALTER TABLE strategy_state ADD COLUMN stream_id text NOT NULL DEFAULT '';

CREATE TABLE control_events (
    stream_id          text PRIMARY KEY,
    kind               text NOT NULL,           -- kill, unkill, pause, resume, state, limits, covariance
    target             text NOT NULL,           -- strategy id, or '*' (node-wide)
    payload            jsonb NOT NULL,
    ts                 timestamptz NOT NULL
);
CREATE INDEX control_events_target_idx ON control_events (target, ts);
