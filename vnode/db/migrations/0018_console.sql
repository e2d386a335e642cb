-- The operator console (issue 14, docs/CONSOLE.md): its sessions, the trail of its actions, the
-- audit's recorded runs, the `console` key scope, and the indexes its pages read by.

-- A read-only operator's key: sees every console page, can move nothing (vnode/apikeys.py).
ALTER TABLE api_keys DROP CONSTRAINT api_keys_scope_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_scope_check
    CHECK (scope IN ('admin', 'console', 'spend', 'receive', 'read'));
-- Console pages show when a key was last used; written at most once a minute per key.
ALTER TABLE api_keys ADD COLUMN last_used_at timestamptz;

-- A login: the cookie holds a random token, the table only its SHA-256 (a stolen table opens no
-- session). key_id NULL: the VNODE_ADMIN_KEY bootstrap key. The CSRF token is per session.
CREATE TABLE console_sessions (
    token_hash  bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    key_id      bigint REFERENCES api_keys (id),
    key_name    text NOT NULL,
    scope       text NOT NULL CHECK (scope IN ('admin', 'console')),
    csrf_token  text NOT NULL CHECK (char_length(csrf_token) >= 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    ended_at    timestamptz  -- logout
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);

-- Every console action, written before it runs (outcome NULL) and completed after: an action
-- that moved money always has its row, with the operator's reason. The form's idempotency key
-- makes a double submit one action.
CREATE TABLE console_actions (
    id               bigserial PRIMARY KEY,
    idempotency_key  text NOT NULL UNIQUE CHECK (char_length(idempotency_key) BETWEEN 16 AND 100),
    action           text NOT NULL CHECK (action IN ('credit', 'debit', 'retry_webhooks',
                                                     'revoke_key', 'create_key', 'set_limits',
                                                     'run_audit')),
    target           text NOT NULL,
    details          jsonb NOT NULL DEFAULT '{}',
    reason           text NOT NULL CHECK (char_length(reason) BETWEEN 3 AND 500),
    key_id           bigint,
    key_name         text NOT NULL,
    outcome          text,            -- 'ok' or a refusal's code; NULL while it runs
    outcome_detail   text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
CREATE INDEX console_actions_recent ON console_actions (id DESC);

-- `vnode audit` runs started from the console: the overview shows the last one.
CREATE TABLE audit_runs (
    id           bigserial PRIMARY KEY,
    clean        boolean NOT NULL,
    differences  integer NOT NULL CHECK (differences >= 0),
    checked      jsonb NOT NULL,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL DEFAULT now()
);

-- Traffic plots read the journal and the payments by time, and a user's page their payments;
-- the search finds a user by an invoice's or payment's hash (ln_invoices' key, and:)
-- BRIN on the journal: it is appended in time order, and 0008 took its other indexes off to
-- spare every movement their writes; a BRIN index costs next to nothing per insert.
CREATE INDEX virtual_transactions_created ON virtual_transactions USING brin (created_at);
CREATE INDEX ln_payments_created ON ln_payments (created_at);
CREATE INDEX ln_payments_hash ON ln_payments (payment_hash);
CREATE INDEX ln_receipts_created ON ln_receipts USING brin (created_at);
CREATE INDEX ln_payments_finished ON ln_payments (finished_at) WHERE kind = 'external';

-- Traffic per minute and per hour (vnode/console/traffic.py), rolled up by a worker from the
-- journal and the payment tables for minutes at least two minutes old, and from those minutes
-- for complete hours; the console reads these rows, plus the raw rows of the minutes not rolled
-- up yet. Any process may roll up (an advisory lock keeps it to one at a time); the result is a
-- pure function of the rows, so every process agrees.
CREATE TABLE console_traffic (
    width_s   integer NOT NULL CHECK (width_s IN (60, 3600)),
    bucket    timestamptz NOT NULL,
    series    text NOT NULL,
    asset_id  text NOT NULL,
    count     bigint NOT NULL CHECK (count >= 0),
    volume    numeric NOT NULL,
    PRIMARY KEY (width_s, bucket, series, asset_id)
);
CREATE TABLE console_traffic_state (
    id              integer PRIMARY KEY CHECK (id = 1),
    rolled_through  timestamptz  -- minutes before this are in console_traffic
);
INSERT INTO console_traffic_state (id, rolled_through) VALUES (1, NULL);
