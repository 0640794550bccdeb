-- 014: one row per reconciliation run, beside its reconciliation_results rows: the trigger, the
-- verdict, the counts per discrepancy kind, the actions taken and the Markdown report a person reads.
-- (Numbered after issue 14 so it cannot collide with migrations other work adds meanwhile.)

CREATE TABLE reconciliation_runs (
    run_id             text PRIMARY KEY,
    trigger            text NOT NULL,
    brokers            text NOT NULL DEFAULT '',
    matched            boolean NOT NULL,
    counts             jsonb NOT NULL DEFAULT '{}'::jsonb,
    actions            jsonb NOT NULL DEFAULT '[]'::jsonb,
    booked             integer NOT NULL DEFAULT 0,
    in_flight          integer NOT NULL DEFAULT 0,
    took_ms            double precision NOT NULL DEFAULT 0,
    error              text NOT NULL DEFAULT '',
    report_md          text NOT NULL,
    started_at         timestamptz NOT NULL,
    recorded_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reconciliation_runs_started_idx ON reconciliation_runs (started_at);
