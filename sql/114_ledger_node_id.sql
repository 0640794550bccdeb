-- 114 (issue 14, second): which node wrote a ledger row, a fill's fee, and the book each node opened with.
-- Several nodes may share one database: a node's reconciler compares only the fills and orders its
-- own ledger wrote (rows written before this migration carry '', no node's). No index: the ledger's
-- write-heavy tables keep only their unique keys (001), and a run reads every row of its node.

ALTER TABLE fills ADD COLUMN node_id text NOT NULL DEFAULT '';
-- the fee and commission the broker reported for the fill (its execution's commission report), as
-- the reconciler learnt it while the fill was in the broker's window; NULL: none reported (the
-- node's fee schedule stands in). Kept so cash agrees after the broker's window moves on.
ALTER TABLE fills ADD COLUMN fee double precision;
ALTER TABLE orders ADD COLUMN node_id text NOT NULL DEFAULT '';

-- The broker accounts as the node found them at its first reconciliation with an empty ledger: the
-- positions (with the broker's average cost) and cash held before the node's first fill. The node's
-- positions and cash are this opening book plus its ledger's fills (node/reconcile.py).
CREATE TABLE reconciliation_openings (
    node_id            text PRIMARY KEY,
    brokers            text NOT NULL DEFAULT '',
    cash               double precision,          -- NULL: a broker gave none
    positions          jsonb NOT NULL DEFAULT '{}'::jsonb,   -- symbol -> [qty, average cost]
    run_id             text NOT NULL DEFAULT '',
    taken_at           timestamptz NOT NULL DEFAULT now()
);
