-- 002: control state that must survive restarts: circuit breakers, strategy switches,
-- reconciliation results, broker OAuth tokens (ciphertext only).

CREATE TABLE circuit_breaker_state (
    name               text PRIMARY KEY,
    state              text NOT NULL CHECK (state IN ('CLOSED', 'OPEN', 'HALF_OPEN')),
    failures           integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
    opened_at          timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE strategy_state (
    strategy_id        text PRIMARY KEY,
    paused             boolean NOT NULL DEFAULT false,
    killed             boolean NOT NULL DEFAULT false,
    mode               text NOT NULL DEFAULT 'NORMAL' CHECK (mode IN ('NORMAL', 'REDUCING', 'HALTED')),
    reason             text NOT NULL DEFAULT '',
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE reconciliation_results (
    run_id             text NOT NULL,
    broker             text NOT NULL,
    account            text NOT NULL DEFAULT '',
    strategy_id        text NOT NULL DEFAULT '',
    symbol             text NOT NULL,
    ledger_qty         double precision NOT NULL,
    broker_qty         double precision NOT NULL,
    ledger_avg_px      double precision,
    broker_avg_px      double precision,
    matched            boolean NOT NULL,
    action             text NOT NULL DEFAULT '',  -- what the reconciler did: '', REDUCING, HALTED
    detail             jsonb NOT NULL DEFAULT '{}'::jsonb,
    checked_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, broker, account, strategy_id, symbol)
);
CREATE INDEX reconciliation_mismatch_idx ON reconciliation_results (checked_at) WHERE NOT matched;

-- encrypted at rest: AES-256-GCM ciphertext and its nonce (node/token_vault.py); never the token itself
CREATE TABLE oauth_tokens (
    broker             text NOT NULL,
    account            text NOT NULL,
    key_id             text NOT NULL,           -- which vault key sealed it (keys rotate)
    nonce              bytea NOT NULL CHECK (octet_length(nonce) = 12),
    ciphertext         bytea NOT NULL,
    expires_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (broker, account)
);
